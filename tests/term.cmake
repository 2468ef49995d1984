# The terminal front end's text, written into a pipe (unit); answered
# through a real pseudo-terminal: it_terminal in notify.cmake.
vmo_unit_test(NAME test_term SOURCES test_term.c LABELS unit)
