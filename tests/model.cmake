vmo_unit_test(NAME test_model SOURCES test_model.c LABELS unit)
