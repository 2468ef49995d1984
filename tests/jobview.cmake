# The commit in Plasma's job tracker (issue 6 item 2): the vmoverlay binary on
# a private bus with the dbusmock notification server and a dbusmock
# org.kde.kuiserver (integration/jobview-server.py) recording every
# JobViewServer/JobViewV2 call; a finished commit, then cancelRequested from
# the job view really cancels and Resume completes.
vmo_script_test(NAME it_notify_jobview COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/notify-jobview.sh
  LABELS integration notify TIMEOUT 120)
