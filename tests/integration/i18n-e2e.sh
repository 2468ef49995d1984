#!/bin/bash
# Issue 9 end to end: what vmoverlay says over D-Bus follows the locale.
# For LANG=zh_CN.UTF-8, de_DE.UTF-8 and C (LANGUAGE, LC_ALL, LC_MESSAGES
# unset) it runs `vmoverlay --demo` on a private bus with the dbusmock
# notification server, and checks, against strings taken from po/*.po:
#   - the tray menu labels from com.canonical.dbusmenu.GetLayout (and that
#     no label but the VM's name is left in English), the VM's state line
#     being the bare translated state,
#   - the SNI ToolTip while the demo VM runs (overlay size with the
#     locale's decimal separator) and after it shut down,
#   - the prompt notification's summary, body and action labels,
#   - the result notification after answering "commit",
#   - the command-line client: status lines and a refusal made by the
#     running instance,
#   - a --check-config error;
# plus LANGUAGE and LC_MESSAGES taking precedence over LANG.
# The Chinese menu and prompt are printed as returned over D-Bus.
# The applet and its CLI run as the unprivileged test user (NT_USER),
# owning their XDG dirs and TMPDIR.
set -u
. "$VMO_SRC/tests/integration/notify-env.sh"
fail_count=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail_count=$((fail_count + 1)); }
die() { echo "FAIL $*" >&2; exit 1; }
[ -x "${VMO_BIN:-}" ] || die "VMO_BIN not set or not executable"
for p in qemu-img qemu-io gdbus locale; do
	command -v "$p" >/dev/null || die "required program '$p' is missing"
done
# The locales must exist (tools/gen-locales.sh makes them); without them
# setlocale() fails and everything silently stays English.
for l in de_DE.utf8 zh_CN.utf8; do
	locale -a | grep -qx "$l" || die "locale $l is not installed (run tools/gen-locales.sh)"
done

work=$(mktemp -d)
nt_bus_start || exit 1
trap 'nt_cleanup; rm -rf "$work"' EXIT
nt_mock_start || exit 1
mkdir -p "$work"/{C,zh_CN,de}/tmp
nt_user_home "$work" || exit 1
export XDG_STATE_HOME=$work/state XDG_CONFIG_HOME=$work/config

# Labels of the whole menu tree, one per line, indented by depth, with
# [hidden]/[disabled] marks: the form shown in the test output.
menu_tree() {
	"$NT_PY" - "$1" <<'PYEOF'
import sys, dbus
bus = dbus.SessionBus()
menu = bus.get_object(sys.argv[1], '/MenuBar')
rev, layout = menu.GetLayout(0, -1, dbus.Array([], signature='s'),
                             dbus_interface='com.canonical.dbusmenu')
def walk(node, depth):
    mid, props, children = node
    if props.get('type') == 'separator':
        print('  ' * depth + '----')
    elif 'label' in props:
        marks = ''
        if not props.get('visible', True):
            marks += ' [hidden]'
        if not props.get('enabled', True):
            marks += ' [disabled]'
        if props.get('toggle-type') == 'radio':
            marks = (' (•)' if props.get('toggle-state') == 1 else ' ( )') + marks
        print('  ' * depth + str(props['label']) + marks)
    for c in children:
        walk(c, depth + 1)
walk(layout, -1)
PYEOF
}

# Every label, one per line, exactly as in GetLayout.
menu_labels() {
	"$NT_PY" - "$1" <<'PYEOF'
import sys, dbus
bus = dbus.SessionBus()
menu = bus.get_object(sys.argv[1], '/MenuBar')
rev, layout = menu.GetLayout(0, -1, dbus.Array([], signature='s'),
                             dbus_interface='com.canonical.dbusmenu')
def walk(node):
    mid, props, children = node
    if 'label' in props:
        print(str(props['label']))
    for c in children:
        walk(c)
walk(layout)
PYEOF
}

tooltip() {
	"$NT_PY" - "$1" <<'PYEOF'
import sys, dbus
bus = dbus.SessionBus()
item = bus.get_object(sys.argv[1], '/StatusNotifierItem')
icon, pixmaps, title, text = item.Get('org.kde.StatusNotifierItem', 'ToolTip',
                                      dbus_interface='org.freedesktop.DBus.Properties')
print(str(text))
PYEOF
}

# The last Notify call's summary, body and actions, one per line:
# "summary\t...", "body\t..." (newlines as \n), "action\tKEY\tLABEL".
last_notify() {
	"$NT_PY" - <<'PYEOF'
import dbus
bus = dbus.SessionBus()
mock = bus.get_object('org.freedesktop.Notifications', '/org/freedesktop/Notifications')
calls = mock.GetMethodCalls('Notify', dbus_interface='org.freedesktop.DBus.Mock')
ts, args = calls[-1]
app, replaces, icon, summary, body, actions, hints, timeout = args
print('summary\t' + str(summary))
print('body\t' + str(body).replace('\n', '\\n'))
for k, l in zip(actions[0::2], actions[1::2]):
    print('action\t%s\t%s' % (k, l))
PYEOF
}

# has LIST-FILE EXACT-LINE WHAT
has() {
	if grep -qxF -- "$2" "$1"; then ok "$3: “$2”"; else bad "$3: no “$2” in: $(tr '\n' '|' <"$1")"; fi
}

# cli TAG LANG EXPECTED-LINE ARGS...: the command-line client in LANG
# prints EXPECTED-LINE (stdout and stderr together).
cli() {
	local tag=$1 lang=$2 want=$3 out
	shift 3
	out=$("${NT_APP[@]}" env -u LANGUAGE -u LC_ALL -u LC_MESSAGES LANG="$lang" "$VMO_BIN" "$@" 2>&1)
	if printf '%s\n' "$out" | grep -qxF -- "$want"; then
		ok "$tag vmoverlay $*: $want"
	else
		bad "$tag vmoverlay $*: expected “$want”, got: $out"
	fi
}

# run_lang TAG LANG  (sets the expected strings from the E_* variables)
run_lang() {
	local tag=$1 lang=$2 dir=$work/$1 pid svc i
	mkdir -p "$dir/tmp"
	nt_mock_start || die "notification server ($tag)"
	"${NT_APP[@]}" env -u LANGUAGE -u LC_ALL -u LC_MESSAGES LANG="$lang" TMPDIR="$dir/tmp" \
		VMO_DEMO_COUNTDOWN=4 "$VMO_BIN" --demo >"$dir/log" 2>&1 &
	pid=$!
	svc=org.kde.StatusNotifierItem-$pid-1
	for i in $(seq 200); do
		nt_has_owner "$svc" && nt_has_owner io.github.vmoverlay && break
		sleep 0.025
	done
	nt_has_owner "$svc" || { cat "$dir/log"; die "$tag: the tray item did not appear"; }
	[ "$(stat -c %U "/proc/$pid")" = "$NT_USER" ] || die "$tag: the applet does not run as $NT_USER"

	# While the demo VM runs: tooltip with the countdown and the size.
	tooltip "$svc" >"$dir/tip-running"
	if grep -qE -- "^test $E_TIP_RUNNING_RE\$" "$dir/tip-running"; then
		ok "$tag tooltip (running): $(cat "$dir/tip-running")"
	else
		bad "$tag tooltip (running): “$(cat "$dir/tip-running")” does not match “test $E_TIP_RUNNING_RE”"
	fi

	# The prompt.
	nt_wait_count Notify 1 20 || { cat "$dir/log"; die "$tag: no prompt"; }
	last_notify >"$dir/prompt"
	has "$dir/prompt" "summary	$E_SUMMARY" "$tag prompt summary"
	has "$dir/prompt" "body	$E_BODY" "$tag prompt body"
	has "$dir/prompt" "action	commit	$E_ACT_COMMIT" "$tag prompt action commit"
	has "$dir/prompt" "action	discard	$E_ACT_DISCARD" "$tag prompt action discard"
	has "$dir/prompt" "action	keep	$E_ACT_KEEP" "$tag prompt action keep"
	has "$dir/prompt" "action	default	$E_ACT_DEFAULT" "$tag prompt default action"

	# Tooltip and menu while the decision is pending (every action shown).
	tooltip "$svc" >"$dir/tip-pending"
	has "$dir/tip-pending" "test — $E_PENDING" "$tag tooltip (pending)"
	menu_labels "$svc" >"$dir/labels"
	menu_tree "$svc" >"$dir/tree"
	# The submenu's state line is the bare state (the name is the submenu's
	# title, the details are in the tooltip).
	for l in "$E_PENDING" "${E_MENU[@]}"; do
		has "$dir/labels" "$l" "$tag menu label"
	done
	if [ "$tag" = zh_CN ]; then
		echo "---- Chinese tray menu (com.canonical.dbusmenu.GetLayout, LANG=$lang) ----"
		cat "$dir/tree"
		echo "---- raw GetLayout reply ----"
		gdbus call --session -d "$svc" -o /MenuBar -m com.canonical.dbusmenu.GetLayout \
			-- 0 -1 '["label"]'
		echo "---- Chinese prompt (org.freedesktop.Notifications.Notify as received) ----"
		sed 's/\\n/\n      /g' "$dir/prompt"
		echo "---- raw Notify call ----"
		nt_calls Notify
		echo "---- Chinese tooltip (SNI ToolTip) ----"
		echo "running: $(cat "$dir/tip-running")"
		echo "pending: $(cat "$dir/tip-pending")"
		echo "----"
	fi

	cli "$tag" "$lang" "$E_STATUS_PENDING" status

	# Answer through the notification; the result comes back translated.
	nt_emit_action 1 commit
	for i in $(seq 400); do
		[ "$(nt_count Notify)" -ge 2 ] && last_notify >"$dir/result" &&
			grep -qxF "summary	$E_RESULT_SUMMARY" "$dir/result" && break
		sleep 0.025
	done
	last_notify >"$dir/result"
	has "$dir/result" "summary	$E_RESULT_SUMMARY" "$tag result summary"
	if grep -qE -- "^body	$E_RESULT_BODY_RE\$" "$dir/result"; then
		ok "$tag result body: $(sed -n 's/^body	//p' "$dir/result")"
	else
		bad "$tag result body: $(sed -n 's/^body	//p' "$dir/result") does not match $E_RESULT_BODY_RE"
	fi
	[ "$tag" = zh_CN ] && echo "Chinese result: $(sed -n 's/^summary	//p' "$dir/result") / $(sed -n 's/^body	//p' "$dir/result")"

	# Back to a clean overlay: the status line, and a refusal whose
	# sentence is made by the running instance.
	cli "$tag" "$lang" "$E_STATUS_CLEAN" status
	cli "$tag" "$lang" "$E_REFUSED_KEEP" keep test

	nt_call io.github.vmoverlay /io/github/vmoverlay io.github.vmoverlay.Control1.Quit >/dev/null ||
		bad "$tag: Quit"
	wait "$pid"
	local status=$?
	[ "$status" -eq 0 ] || { cat "$dir/log"; bad "$tag: exit status $status"; }

	# --check-config error in the same language.
	printf 'vms = (\n  { name = "a";\n    policy = "often"; }\n);\n' >"$dir/policy.conf"
	local out
	out=$(cd "$dir" && "${NT_APP[@]}" env -u LANGUAGE -u LC_ALL -u LC_MESSAGES LANG="$lang" \
		"$VMO_BIN" --check-config --config policy.conf 2>&1)
	if printf '%s\n' "$out" | grep -qxF -- "policy.conf:3: $E_CHECK"; then
		ok "$tag --check-config: policy.conf:3: $E_CHECK"
	else
		bad "$tag --check-config: expected “policy.conf:3: $E_CHECK”, got: $out"
	fi
}

# ---- English (LANG=C): also the reference for "nothing left in English".
E_TIP_RUNNING_RE='— running · overlay [0-9]\.[0-9] MiB · shuts down in [1-4] seconds?'
E_SUMMARY='test shut down'
E_BODY='Keep the changes made in this session?'
E_ACT_COMMIT=Commit E_ACT_DISCARD=Discard E_ACT_KEEP='Keep for now' E_ACT_DEFAULT='Show in the tray menu'
E_PENDING='shut off · decision pending'
E_MENU=('_Commit changes into base…' '_Discard changes' '_Keep for now' '_Resume commit' 'Re_try'
	'_Undo discard' 'C_ancel commit' '_When it shuts down' '_Ask' '_Commit' '_Discard' '_Keep'
	'_Open in virt-manager' '_Reload configuration' '_About vmoverlay' '_Quit')
E_RESULT_SUMMARY='test: changes committed'
E_RESULT_BODY_RE='test: [0-9.]+ [KM]iB committed into test-base\.qcow2; fresh overlay ready'
E_CHECK='unknown policy "often" (expected ask, commit, discard or keep)'
E_STATUS_PENDING='test — shut off · decision pending — waiting for your decision (commit, discard or keep) [on shutdown: ask]'
E_STATUS_CLEAN='test — shut off · clean [on shutdown: ask]'
E_REFUSED_KEEP='vmoverlay: cannot keep test now: it is shut off · clean'
run_lang C C
english=$work/C/labels

# Every label but the VM's name must differ from English in a translation.
untranslated_labels() {
	local f=$1 l
	while IFS= read -r l; do
		[ "$l" = test ] && continue
		grep -qxF -- "$l" "$english" && printf '%s\n' "$l"
	done <"$f"
}

# ---- Simplified Chinese
E_TIP_RUNNING_RE='— 运行中 · 覆盖镜像 [0-9]\.[0-9] MiB · [1-4] 秒后关机'
E_SUMMARY='test 已关机'
E_BODY='保留本次会话中的更改吗？'
E_ACT_COMMIT=提交 E_ACT_DISCARD=丢弃 E_ACT_KEEP=暂时保留 E_ACT_DEFAULT=在托盘菜单中显示
E_PENDING='已关机 · 等待决定'
E_MENU=('将更改提交到基础镜像(_C)…' '丢弃更改(_D)' '暂时保留(_K)' '继续提交(_R)' '重试(_T)'
	'撤销丢弃(_U)' '取消提交(_A)' '关机时(_W)' '询问(_A)' '提交(_C)' '丢弃(_D)' '保留(_K)'
	'在 virt-manager 中打开(_O)' '重新加载配置(_R)' '关于 vmoverlay(_A)' '退出(_Q)')
E_RESULT_SUMMARY='test：更改已提交'
E_RESULT_BODY_RE='test：已将 [0-9.]+ [KM]iB 提交到 test-base\.qcow2；新的覆盖镜像已就绪'
E_CHECK='未知策略“often”（应为 ask、commit、discard 或 keep）'
E_STATUS_PENDING='test — 已关机 · 等待决定 — 等待您的决定（commit、discard 或 keep） [关机时：ask]'
E_STATUS_CLEAN='test — 已关机 · 无更改 [关机时：ask]'
E_REFUSED_KEEP='vmoverlay: 现在无法保留 test 的更改（当前状态：已关机 · 无更改）'
run_lang zh_CN zh_CN.UTF-8
left=$(untranslated_labels "$work/zh_CN/labels")
[ -z "$left" ] && ok "zh_CN: no menu label left in English" || bad "zh_CN: labels still English: $left"

# ---- German: sizes with a decimal comma.
E_TIP_RUNNING_RE='— läuft · Overlay [0-9],[0-9] MiB · fährt in [1-4] Sekunden? herunter'
E_SUMMARY='test wurde heruntergefahren'
E_BODY='Die Änderungen aus dieser Sitzung behalten?'
E_ACT_COMMIT=Übernehmen E_ACT_DISCARD=Verwerfen E_ACT_KEEP='Vorerst behalten'
E_ACT_DEFAULT='Im Menü des Systemabschnitts anzeigen'
E_PENDING='ausgeschaltet · Entscheidung ausstehend'
E_MENU=('Änderungen ins Basis-Image _übernehmen …' 'Änderungen _verwerfen' 'Vorerst _behalten'
	'Übernehmen _fortsetzen' '_Erneut versuchen' 'Verwerfen _rückgängig machen'
	'Übernehmen _abbrechen' 'Beim _Herunterfahren' '_Fragen' 'Übe_rnehmen' '_Verwerfen'
	'_Behalten' 'In virt-_manager öffnen' '_Konfiguration neu laden' 'Über _vmoverlay' '_Beenden')
E_RESULT_SUMMARY='test: Änderungen übernommen'
E_RESULT_BODY_RE='test: [0-9,]+ [KM]iB in test-base\.qcow2 übernommen; neues Overlay bereit'
E_CHECK='unbekannte Richtlinie „often“ (erwartet: ask, commit, discard oder keep)'
E_STATUS_PENDING='test — ausgeschaltet · Entscheidung ausstehend — wartet auf Ihre Entscheidung (commit, discard oder keep) [beim Herunterfahren: ask]'
E_STATUS_CLEAN='test — ausgeschaltet · unverändert [beim Herunterfahren: ask]'
E_REFUSED_KEEP='vmoverlay: Änderungen von test können jetzt nicht behalten werden (Zustand: ausgeschaltet · unverändert)'
run_lang de de_DE.UTF-8
left=$(untranslated_labels "$work/de/labels")
[ -z "$left" ] && ok "de: no menu label left in English" || bad "de: labels still English: $left"

# ---- Which variable wins: LANGUAGE over LANG, LC_MESSAGES over LANG,
# LC_ALL over both; an unknown language falls back to English.
printf 'reconcile_interval = ;\n' >"$work/syntax.conf"
check_env() { # EXPECTED-MESSAGE ENV...
	local want=$1 out
	shift
	out=$(cd "$work" && "${NT_APP[@]}" env -u LANGUAGE -u LC_ALL -u LC_MESSAGES "$@" \
		"$VMO_BIN" --check-config --config syntax.conf 2>&1)
	if printf '%s\n' "$out" | grep -qxF -- "syntax.conf:1: $want"; then
		ok "$* -> $want"
	else
		bad "$*: expected “syntax.conf:1: $want”, got: $out"
	fi
}
check_env 'Syntaxfehler' LANG=zh_CN.UTF-8 LANGUAGE=de
check_env '语法错误' LANG=C.UTF-8 LC_MESSAGES=zh_CN.UTF-8
check_env 'Syntaxfehler' LANG=zh_CN.UTF-8 LC_MESSAGES=zh_CN.UTF-8 LC_ALL=de_DE.UTF-8
check_env 'syntax error' LANG=zh_CN.UTF-8 LANGUAGE=fr:en
check_env 'syntax error' LANG=C

[ "$fail_count" -eq 0 ] || { echo "$fail_count check(s) failed"; exit 1; }
echo "all i18n end-to-end checks passed"
