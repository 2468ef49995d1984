# libvirt watcher, qcow2 header reader, state file (issue 4).
vmo_unit_test(NAME test_image SOURCES test_image.c)
vmo_unit_test(NAME test_virt SOURCES test_virt.c)
