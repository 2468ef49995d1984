/* gettext for every string a user reads. Log lines may stay English.
 * i18n_init() binds the text domain to the build tree's locale dir when run
 * uninstalled (VMO_LOCALEDIR_BUILD) and to the installed one otherwise. */
#ifndef VMO_I18N_H
#define VMO_I18N_H

#include <libintl.h>
#include <stddef.h>
#include <stdint.h>

#define _(s) gettext(s)
#define N_(s) (s)
#define P_(s, p, n) ngettext((s), (p), (n))
/* Translator context, e.g. C_("menu", "Quit"). */
#define C_(ctx, s) vmo_pgettext(ctx "\004" s, s)

void i18n_init(void);
const char *vmo_pgettext(const char *ctx_msgid, const char *msgid);
/* "1.2 GiB", "340 MiB", "12 KiB", "512 bytes": locale's decimal separator.
 * Writes into buf (returns buf). */
char *i18n_format_size(char *buf, size_t len, uint64_t bytes);

#endif
