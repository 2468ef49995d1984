#!/bin/sh
# Every string the build extracted (build-tree vmoverlay.pot) must be
# translated, and not fuzzy, in every language of po/LINGUAS; translated
# menu labels (msgctxt "menu") stay short enough for a tray menu.
# Usage: check-po-complete.sh POT PO_DIR
set -eu
pot=$1
podir=$2
[ -f "$pot" ] || { echo "missing $pot (build the vmoverlay-pot target)" >&2; exit 1; }
for tool in msgmerge msgattrib msgfmt msggrep; do
	command -v $tool >/dev/null || { echo "missing $tool (package gettext)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for lang in $(grep -v '^#' "$podir/LINGUAS"); do
	# Merge as update-po would, without touching the source tree.
	msgmerge --quiet --no-fuzzy-matching -o "$tmp/$lang.po" "$podir/$lang.po" "$pot"
	stats=$(msgfmt --statistics -o /dev/null "$tmp/$lang.po" 2>&1)
	echo "$lang: $stats"
	missing=$(msgattrib --untranslated --no-obsolete --no-wrap "$tmp/$lang.po" | grep -c '^msgid ' || true)
	fuzzy=$(msgattrib --only-fuzzy --no-obsolete --no-wrap "$tmp/$lang.po" | grep -c '^msgid ' || true)
	# Each listing has the header entry as its first msgid.
	[ "$missing" -gt 0 ] && missing=$((missing - 1))
	[ "$fuzzy" -gt 0 ] && fuzzy=$((fuzzy - 1))
	if [ "$missing" -ne 0 ] || [ "$fuzzy" -ne 0 ]; then
		echo "$lang: $missing untranslated, $fuzzy fuzzy; run 'cmake --build BUILD --target update-po' and translate:"
		msgattrib --untranslated --only-fuzzy --no-obsolete --no-wrap "$tmp/$lang.po" >/dev/null 2>&1 || true
		msgattrib --untranslated --no-obsolete --no-wrap --no-location "$tmp/$lang.po" |
			sed -n 's/^msgid "\(..*\)"$/  untranslated: \1/p'
		msgattrib --only-fuzzy --no-obsolete --no-wrap --no-location "$tmp/$lang.po" |
			sed -n 's/^msgid "\(..*\)"$/  fuzzy: \1/p'
		status=1
	fi
	# Tray menu labels: at most 40 characters in every language.
	long=$(msggrep --msgctxt -e '^menu$' --no-wrap "$tmp/$lang.po" 2>/dev/null |
		sed -n 's/^msgstr "\(.*\)"$/\1/p' | awk 'length($0) > 40' || true)
	if [ -n "$long" ]; then
		echo "$lang: menu labels over 40 characters:"
		printf '  %s\n' "$long"
		status=1
	fi
done
exit $status
