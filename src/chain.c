/* chain.c: where a commit goes in a backing chain deeper than one, and
 * what the fresh overlay after it is backed by (chain.h). Reads the facts
 * virt-disks.c put into struct vm_disk; one header read for a rebuild
 * after a commit into a deeper base. */
#include "chain.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "i18n.h"
#include "image.h"

int chain_base_depth(const struct vm_disk *d)
{
	for (size_t k = 0; d->base && k < d->n_chain; k++)
		if (strcmp(d->chain[k], d->base) == 0 || image_same_file(d->chain[k], d->base))
			return (int)k;
	return -1;
}

const char *chain_commit_target(const struct vm *vm, const struct vm_disk *d)
{
	if (!vm->cfg || vm->cfg->commit_into != COMMIT_INTO_DEEPEST || d->n_chain < 2)
		return NULL;
	return chain_base_depth(d) > 0 ? d->base : NULL;
}

static int set_msg(char **err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_msg(char **err, int r, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		free(*err);
		if (vasprintf(err, fmt, ap) < 0)
			*err = NULL;
		va_end(ap);
	}
	return r;
}

int chain_rebuild_backing(const struct vm *vm, const struct vm_disk *d, bool after_commit,
			  char **backing, char **format, char **err)
{
	*backing = *format = NULL;
	const char *target = after_commit ? chain_commit_target(vm, d) : NULL;
	if (!target) {
		if (!d->backing_stored || !d->backing_format)
			return set_msg(err, -EINVAL,
				       _("%s: the overlay does not record its backing file and "
					 "format"),
				       d->overlay ? d->overlay : "?");
		*backing = strdup(d->backing_stored);
		*format = strdup(d->backing_format);
	} else {
		/* The base's format is what the file above it records; the
		 * files between are invalid after `commit -b`, so the fresh
		 * overlay lies on the base directly. */
		int k = chain_base_depth(d);
		const char *above = d->chain[k - 1];
		struct qcow2_info info;
		char *ierr = NULL;
		int r = image_read_qcow2(above, &info, &ierr);
		if (r < 0) {
			set_msg(err, r, "%s", ierr ? ierr : strerror(-r));
			free(ierr);
			return r;
		}
		char *resolved = image_resolve_backing(above, info.backing_file);
		bool same = resolved && image_same_file(resolved, target);
		free(resolved);
		if (!same || !info.backing_format) {
			r = set_msg(
			    err, -EAGAIN,
			    _("%s no longer records %s as its backing file with its format; "
			      "nothing was changed"),
			    above, target);
			image_info_clear(&info);
			return r;
		}
		*backing = strdup(target);
		*format = strdup(info.backing_format);
		image_info_clear(&info);
	}
	if (!*backing || !*format) {
		free(*backing);
		free(*format);
		*backing = *format = NULL;
		return set_msg(err, -ENOMEM, "%s", strerror(ENOMEM));
	}
	return 0;
}

char *chain_resume_refusal(const struct vm *vm, const struct vm_disk *d, const char *journal_base)
{
	if (!journal_base || !d->base || strcmp(journal_base, d->base) == 0 ||
	    image_same_file(journal_base, d->base))
		return NULL;
	char *s = NULL;
	/* TRANSLATORS: VM name, the file the interrupted commit wrote into,
	 * the file a commit would go into now */
	if (asprintf(&s,
		     _("%s: the interrupted commit was writing into %s, but a commit now would go "
		       "into %s (was commit_into changed?); only finishing it into %s is safe: "
		       "restore the configuration, or resolve this by hand"),
		     vm->name, journal_base, d->base, journal_base) < 0)
		s = NULL;
	return s ? s : strdup("?");
}
