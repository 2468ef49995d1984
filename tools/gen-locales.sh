#!/bin/sh
# Generates the locales the translation tests run under (de_DE.UTF-8 and
# zh_CN.UTF-8, plus en_US.UTF-8 as an English baseline with a "." decimal
# point). Debian keeps them commented out in /etc/locale.gen; uncomment the
# ones that are missing and run locale-gen once. Idempotent; needs root only
# when something has to be generated.
set -eu

LOCALES="de_DE.UTF-8 zh_CN.UTF-8 en_US.UTF-8"
GEN=/etc/locale.gen

have_locale() {
	# locale -a prints normalised names: de_DE.utf8
	norm=$(printf '%s' "$1" | sed 's/UTF-8$/utf8/')
	locale -a 2>/dev/null | grep -qx "$norm"
}

missing=""
for l in $LOCALES; do
	have_locale "$l" || missing="$missing $l"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi

if ! command -v locale-gen >/dev/null 2>&1; then
	echo "gen-locales: locale-gen not found (install the 'locales' package)" >&2
	exit 1
fi

for l in $missing; do
	if grep -q "^[#[:space:]]*$l UTF-8" "$GEN"; then
		$SUDO sed -i "s/^[#[:space:]]*$l UTF-8/$l UTF-8/" "$GEN"
	else
		echo "$l UTF-8" | $SUDO tee -a "$GEN" >/dev/null
	fi
done
$SUDO locale-gen

for l in $LOCALES; do
	if ! have_locale "$l"; then
		echo "gen-locales: $l still missing after locale-gen" >&2
		exit 1
	fi
done
