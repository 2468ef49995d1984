#!/bin/sh
# vmoverlay --check-config end to end (issue 2 acceptance, issue 9 tests):
# bad files print FILE:LINE: message and exit 1 (syntax error, unknown
# policy, duplicate VM); a good file exits 0; the messages follow LANG
# (German, Chinese, C = English) from the build tree's translations.
set -u
bin=${VMO_BIN:?VMO_BIN not set}
# vmoverlay runs as the unprivileged test user, as our users run it.
tu=${VMO_SRC:?VMO_SRC not set}/tests/integration/test-user
tuser=$("$tu" name) || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
cd "$tmp"
fail=0

printf 'connect = "qemu:///system";\nreconcile_interval = ;\n' >syntax.conf
printf 'vms = (\n  { name = "a";\n    policy = "often"; }\n);\n' >policy.conf
printf 'vms = (\n  { name = "a"; },\n\n  { name = "a"; }\n);\n' >dup.conf
printf 'connect = "test:///default";\nvms = ( { name = "a"; policy = "keep"; } );\n' >good.conf

# expect LANG FILE EXIT EXPECTED-STDERR-LINE
expect() {
	out=$("$tu" run "$tuser" env -u LANGUAGE -u LC_ALL -u LC_MESSAGES LANG="$1" "$bin" --check-config --config "$2" 2>&1)
	code=$?
	if [ "$code" -ne "$3" ]; then
		echo "FAIL: LANG=$1 --config $2: exit $code, expected $3; output: $out"
		fail=1
	elif ! printf '%s\n' "$out" | grep -qxF -- "$4"; then
		echo "FAIL: LANG=$1 --config $2: no line '$4' in: $out"
		fail=1
	else
		echo "ok   LANG=$1 $2 -> $4"
	fi
}

expect C syntax.conf 1 'syntax.conf:2: syntax error'
expect C policy.conf 1 'policy.conf:3: unknown policy "often" (expected ask, commit, discard or keep)'
expect C dup.conf 1 'dup.conf:4: VM "a" is already defined on line 2'
expect C nope.conf 1 'nope.conf: cannot read the configuration file: No such file or directory'
expect de_DE.UTF-8 syntax.conf 1 'syntax.conf:2: Syntaxfehler'
expect de_DE.UTF-8 policy.conf 1 'policy.conf:3: unbekannte Richtlinie „often“ (erwartet: ask, commit, discard oder keep)'
expect de_DE.UTF-8 dup.conf 1 'dup.conf:4: VM „a“ ist bereits in Zeile 2 definiert'
expect zh_CN.UTF-8 syntax.conf 1 'syntax.conf:2: 语法错误'
expect zh_CN.UTF-8 policy.conf 1 'policy.conf:3: 未知策略“often”（应为 ask、commit、discard 或 keep）'
expect zh_CN.UTF-8 dup.conf 1 'dup.conf:4: 虚拟机“a”已在第 2 行定义'

# A good file: exit 0, and it names the file.
out=$("$tu" run "$tuser" env LANG=C "$bin" --check-config --config good.conf 2>&1)
code=$?
if [ "$code" -ne 0 ] || ! printf '%s' "$out" | grep -q 'good.conf'; then
	echo "FAIL: good.conf: exit $code: $out"
	fail=1
else
	echo "ok   good.conf -> exit 0: $out"
fi

# Command-line errors are translated too and exit non-zero.
out=$("$tu" run "$tuser" env LANG=de_DE.UTF-8 "$bin" --policy sometimes 2>&1)
code=$?
if [ "$code" -eq 0 ] || ! printf '%s' "$out" | grep -qF -- '--policy: unbekannte Richtlinie „sometimes“'; then
	echo "FAIL: --policy sometimes (de): exit $code: $out"
	fail=1
else
	echo "ok   --policy sometimes (de) -> exit $code"
fi
exit $fail
