# The commit in Plasma's job tracker (issue 6 item 2, issue 14 items 3-4): the
# vmoverlay binary on a private bus with the dbusmock notification server and
# a dbusmock org.kde.JobViewServer (integration/jobview-server.py) recording
# every JobViewServer(V2)/JobViewV2/V3 call; a finished commit through V2 with
# no progress notification of ours, cancelRequested really cancels and Resume
# completes, a server restart mid-commit gets a new view, and a server
# without V2 gets the old interface.
vmo_script_test(NAME it_notify_jobview COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/notify-jobview.sh
  LABELS integration notify TIMEOUT 600)
