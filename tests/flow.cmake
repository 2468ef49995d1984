# runner + imageops + flow (issue 5): real qemu-img/qemu-io on real files,
# libvirt through the in-process test:/// driver.
vmo_unit_test(NAME test_runner SOURCES test_runner.c TIMEOUT 120)
# Mounts (read-only bind, small tmpfs) and chattr need root, as CI runs it.
vmo_unit_test(NAME test_flow SOURCES test_flow.c TIMEOUT 300)
