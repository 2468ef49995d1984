/* vmoverlay-helper: the privileged side of commit/rebuild/discard for
 * images the desktop user cannot write (qemu:///system). Run by pkexec as
 *   vmoverlay-helper OP VM-NAME DOMAIN-UUID DISK-TARGET [--base P] [--keep-discarded]
 * It trusts only OP, the UUID and the target: it connects to libvirt itself
 * (qemu:///system; --connect only for root calling directly), re-discovers
 * the overlay and base with the applet's own libvirt watcher (virt.c),
 * re-checks every rule of docs/design.md §4 right before acting, refuses
 * symbolic links, and runs the applet's image operations (imageops.c).
 * Exit statuses: privhelper.h / doc/vmoverlay-helper.8. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>

#include "build-config.h"
#include "chain.h"
#include "config.h"
#include "flow.h"
#include "i18n.h"
#include "image.h"
#include "imageops.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "privhelper.h"
#include "runner.h"
#include "trustfs.h"
#include "virt.h"

/* The flow reads this status as "commit interrupted, keep the journal". */
_Static_assert(PRIVHELPER_EXIT_PARTIAL == FLOW_HELPER_EXIT_PARTIAL,
	       "helper and flow disagree on the partial-commit exit status");
/* ... and this one as "committed, only the fresh overlay is missing". */
_Static_assert(PRIVHELPER_EXIT_COMMITTED == FLOW_HELPER_EXIT_COMMITTED,
	       "helper and flow disagree on the committed-but-no-overlay exit status");

#define SYSTEM_URI         "qemu:///system"
#define CONNECT_TIMEOUT_MS 15000
/* Enough for any qcow2 header with its extensions (image.c reads as much). */
#define HEADER_BYTES 65536

struct helper_args {
	enum imageops_op op;
	const char *name;
	const char *uuid;
	const char *target;
	const char *base;
	const char *connect;
	enum vmo_commit_into commit_into;
	bool keep_discarded;
	bool verbose;
};

/* The user reads the last stderr line (the applet shows it): one line,
 * translated, prefixed with nothing but the VM's name where it helps. */
static int finish(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int finish(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (msg) {
		/* Keep it one line: the applet takes the last one. */
		for (char *p = msg; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		fprintf(code == PRIVHELPER_EXIT_OK ? stdout : stderr, "%s\n", msg);
	}
	free(msg);
	fflush(stdout);
	return code;
}

static void usage(FILE *out)
{
	fprintf(out, "%s",
		_("Usage: vmoverlay-helper OPERATION VM-NAME DOMAIN-UUID DISK-TARGET [--base PATH] "
		  "[--commit-into backing|deepest] [--keep-discarded]\n"
		  "       (root only) vmoverlay-helper --connect URI OPERATION ...\n"
		  "OPERATION: commit, rebuild, discard or undo-discard.\n"
		  "Run by vmoverlay through pkexec; see vmoverlay-helper(8).\n"));
}

static bool parse_args(int argc, char **argv, struct helper_args *a)
{
	const char *pos[4];
	int npos = 0;
	memset(a, 0, sizeof *a);
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (strcmp(s, "--base") == 0 && i + 1 < argc) {
			a->base = argv[++i];
		} else if (strcmp(s, "--commit-into") == 0 && i + 1 < argc) {
			const char *v = argv[++i];
			if (strcmp(v, "deepest") == 0) {
				a->commit_into = COMMIT_INTO_DEEPEST;
			} else if (strcmp(v, "backing") == 0) {
				a->commit_into = COMMIT_INTO_BACKING;
			} else {
				fprintf(stderr,
					_("vmoverlay-helper: --commit-into takes backing or "
					  "deepest\n"));
				return false;
			}
		} else if (strcmp(s, "--connect") == 0 && i + 1 < argc) {
			a->connect = argv[++i];
		} else if (strcmp(s, "--keep-discarded") == 0) {
			a->keep_discarded = true;
		} else if (strcmp(s, "--verbose") == 0) {
			a->verbose = true;
		} else if (s[0] == '-' && s[1] == '-') {
			fprintf(stderr, _("vmoverlay-helper: unknown option %s\n"), s);
			return false;
		} else if (npos < 4) {
			pos[npos++] = s;
		} else {
			fprintf(stderr, _("vmoverlay-helper: too many arguments\n"));
			return false;
		}
	}
	if (npos != 4) {
		usage(stderr);
		return false;
	}
	if (!imageops_op_from_name(pos[0], &a->op)) {
		fprintf(stderr, _("vmoverlay-helper: unknown operation %s\n"), pos[0]);
		return false;
	}
	a->name = pos[1];
	a->uuid = pos[2];
	a->target = pos[3];
	if (!privhelper_valid_name(a->name)) {
		fprintf(stderr, _("vmoverlay-helper: invalid VM name\n"));
		return false;
	}
	if (!privhelper_valid_uuid(a->uuid)) {
		fprintf(stderr, _("vmoverlay-helper: invalid domain UUID %s\n"), a->uuid);
		return false;
	}
	if (!privhelper_valid_target(a->target)) {
		fprintf(stderr, _("vmoverlay-helper: invalid disk target %s\n"), a->target);
		return false;
	}
	if (a->base && a->base[0] != '/') {
		fprintf(stderr, _("vmoverlay-helper: --base needs an absolute path\n"));
		return false;
	}
	return true;
}

static bool set_why(char **why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool set_why(char **why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	free(*why);
	if (vasprintf(why, fmt, ap) < 0)
		*why = NULL;
	va_end(ap);
	return false;
}

/* The header of the opened file. */
static bool read_header(int fd, struct qcow2_info *info, char **err)
{
	uint8_t *buf = malloc(HEADER_BYTES);
	ssize_t n = buf ? pread(fd, buf, HEADER_BYTES, 0) : -1;
	bool ok = n >= 0 && image_parse_qcow2(buf, (size_t)n, info, err) == 0;
	if (n < 0 && err)
		*err = strdup(strerror(errno));
	free(buf);
	return ok;
}

/* Rule 9 in the helper: libvirt asked once more right before the
 * rebuild's rename() (the overlay is held with qemu's lock meanwhile). */
struct helper_recheck {
	struct virt_watcher *w;
	struct vm *vm;
};

static bool helper_recheck(void *data, char **why)
{
	struct helper_recheck *h = data;
	return virt_watcher_check_idle(h->w, h->vm, false, why);
}

/* The base the domain's definition records for the disk (<backingStore>
 * in the inactive XML), or NULL. target is [a-z0-9]+ (checked). */
static char *recorded_backing(virConnectPtr conn, const char *uuid, const char *target)
{
	virDomainPtr dom = virDomainLookupByUUIDString(conn, uuid);
	char *xml = dom ? virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE) : NULL;
	if (dom)
		virDomainFree(dom);
	virResetLastError();
	if (!xml)
		return NULL;
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	free(xml);
	xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
	char expr[160], *path = NULL;
	snprintf(expr, sizeof expr,
		 "string(/domain/devices/disk[target/@dev='%s']/backingStore/source/@file)",
		 target);
	if (ctx)
		path = virt_xpath_string(ctx, expr);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return path;
}

/* path is a volume of an active libvirt storage pool (a pool whose
 * directory holds it is refreshed once if it is not listed yet). */
static bool in_storage_pool(virConnectPtr conn, const char *path)
{
	virStorageVolPtr vol = virStorageVolLookupByPath(conn, path);
	if (!vol) {
		virResetLastError();
		const char *slash = strrchr(path, '/');
		size_t dirlen = slash ? (size_t)(slash - path) : 0;
		virStoragePoolPtr *pools = NULL;
		int n = dirlen ? virConnectListAllStoragePools(
				     conn, &pools, VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
			       : 0;
		for (int i = 0; i < n; i++) {
			char *xml = virStoragePoolGetXMLDesc(pools[i], 0);
			xmlDocPtr doc = xml ? xmlReadMemory(xml, (int)strlen(xml), "pool.xml", NULL,
							    XML_PARSE_NONET | XML_PARSE_NOERROR |
								XML_PARSE_NOWARNING)
					    : NULL;
			free(xml);
			xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
			char *dir = ctx ? virt_xpath_string(ctx, "string(/pool/target/path)") : NULL;
			if (dir && strlen(dir) == dirlen && strncmp(dir, path, dirlen) == 0)
				virStoragePoolRefresh(pools[i], 0);
			free(dir);
			xmlXPathFreeContext(ctx);
			xmlFreeDoc(doc);
			virStoragePoolFree(pools[i]);
		}
		free(pools);
		virResetLastError();
		vol = virStorageVolLookupByPath(conn, path);
	}
	char *vpath = vol ? virStorageVolGetPath(vol) : NULL;
	bool ok = vpath && strcmp(vpath, path) == 0;
	free(vpath);
	if (vol)
		virStorageVolFree(vol);
	virResetLastError();
	return ok;
}

/* Stdin is the applet's cancel channel when it is a pipe (the applet holds
 * the other end and closes it to cancel); otherwise (a terminal, /dev/null)
 * there is none. */
static int cancel_channel(void)
{
	struct stat st;
	return fstat(0, &st) == 0 && S_ISFIFO(st.st_mode) ? 0 : -1;
}

static void print_progress(void *data, double percent)
{
	/* The same record qemu-img -p writes: the applet's runner parses it
	 * through pkexec unchanged. */
	printf("    (%.2f/100%%)\r", percent);
	fflush(stdout);
}

/* Connects the watcher (it does so from a timer) and waits for the first
 * reconcile, or for the first failure: the helper does not retry. */
static bool wait_connected(struct loop *loop, struct virt_watcher *w)
{
	int64_t deadline = loop_now_ms() + CONNECT_TIMEOUT_MS;
	while (!virt_watcher_connected(w) && !virt_watcher_last_error(w)) {
		int64_t left = deadline - loop_now_ms();
		if (left <= 0)
			return false;
		loop_iterate(loop, (int)(left > 200 ? 200 : left));
	}
	return virt_watcher_connected(w);
}

static int run(const struct helper_args *a, const char *uri)
{
	int code = PRIVHELPER_EXIT_FAILED;
	char *why = NULL;
	char *qemu_img = NULL;
	struct qcow2_info ov_info = {0};
	struct trustfs_file ov = TRUSTFS_FILE_INIT, base = TRUSTFS_FILE_INIT;
	char *base_path = NULL;
	struct virt_watcher *w = NULL;
	bool model_ready = false;
	struct model model;

	/* The configuration the applet would have for this VM, built from
	 * nothing the caller could bend: its name (checked against the UUID
	 * below), the target, the optional base it must have. */
	char *disks[1] = {(char *)a->target};
	struct vm_config vmc = {
	    .name = (char *)a->name,
	    .policy = POLICY_ASK,
	    .disk = (char *)a->target,
	    /* A `disk` key is a list of one (config.h). */
	    .disks = disks,
	    .n_disks = 1,
	    .base = (char *)a->base,
	    .commit_into = a->commit_into,
	};
	struct config cfg = {
	    .connect = (char *)uri,
	    .reconcile_interval = 0,
	    .keep_discarded = a->keep_discarded,
	    .vms = &vmc,
	    .n_vms = 1,
	};

	struct virt_now now = {0};
	struct loop *loop = loop_create();
	if (!loop || !loop_virt_register(loop)) {
		code =
		    finish(PRIVHELPER_EXIT_FAILED, _("%s: cannot set up the event loop."), a->name);
		goto out;
	}
	if (!model_init(&model, loop, &cfg)) {
		code = finish(PRIVHELPER_EXIT_FAILED, "%s", _("Out of memory."));
		goto out;
	}
	model_ready = true;
	struct vm *vm = model.vms[0];
	w = virt_watcher_create(loop, &model, &cfg, NULL, NULL);
	if (!w || !wait_connected(loop, w)) {
		const char *e = w ? virt_watcher_last_error(w) : NULL;
		/* TRANSLATORS: %1$s VM, %2$s libvirt URI, %3$s libvirt's error */
		code = finish(PRIVHELPER_EXIT_LIBVIRT,
			      _("%1$s: cannot connect to libvirt at %2$s: %3$s"), a->name, uri,
			      e ? e : _("timed out"));
		goto out;
	}

	/* The domain is identified by its UUID; the name only has to agree
	 * (it is what the polkit dialog showed). */
	virConnectPtr conn = virt_watcher_conn(w);
	virDomainPtr dom = virDomainLookupByUUIDString(conn, a->uuid);
	if (!dom) {
		virResetLastError();
		code = finish(PRIVHELPER_EXIT_REFUSED,
			      _("%1$s: refusing: libvirt at %2$s has no domain with UUID %3$s."),
			      a->name, uri, a->uuid);
		goto out;
	}
	const char *real_name = virDomainGetName(dom);
	bool same_name = real_name && strcmp(real_name, a->name) == 0;
	char real_copy[256];
	snprintf(real_copy, sizeof real_copy, "%s", real_name ? real_name : "?");
	virDomainFree(dom);
	if (!same_name) {
		code = finish(PRIVHELPER_EXIT_REFUSED,
			      _("%1$s: refusing: the domain with UUID %2$s is named %3$s."),
			      a->name, a->uuid, real_copy);
		goto out;
	}

	/* docs/design.md §4 rules 2, 3 and 5, asked afresh, with the applet's own
	 * code: shut off, no managed save, no snapshots, the target is a
	 * writable qcow2 file disk of this domain, its backing is the base
	 * (--base), and for a commit no other domain uses the base. */
	bool for_commit = a->op == IMAGEOPS_COMMIT;
	virt_watcher_query(w, vm, &now);
	why = virt_now_refusal(&now, vm, for_commit);
	if (why) {
		code = finish(PRIVHELPER_EXIT_REFUSED, _("%1$s: refusing: %2$s"), a->name, why);
		goto out;
	}
	/* From here on the facts as libvirt and the images gave them just now. */
	vm = now.facts;
	/* A commit into a base further down (commit_into = "deepest") would
	 * hand qemu-img every file between, each to be checked like the base;
	 * the helper does not do that (yet): refused, nothing changed. The
	 * rebuild after such a commit needs that base too. */
	const char *deep = chain_commit_target(vm, &vm->disks[0]);
	if (deep && (a->op == IMAGEOPS_COMMIT || a->op == IMAGEOPS_REBUILD)) {
		code = finish(PRIVHELPER_EXIT_REFUSED,
			      _("%1$s: refusing: committing through the backing chain into %2$s "
				"(commit_into = \"deepest\") is not supported for images only root "
				"can write; nothing was changed."),
			      a->name, deep);
		goto out;
	}
	/* The helper's configuration names this one disk of the domain. */
	if (strcasecmp(vm->uuid, a->uuid) != 0 || vm->n_disks != 1 || !vm->disks[0].target ||
	    strcmp(vm->disks[0].target, a->target) != 0) {
		code = finish(
		    PRIVHELPER_EXIT_REFUSED,
		    _("%1$s: refusing: disk %2$s of domain %3$s changed while being checked."),
		    a->name, a->target, a->uuid);
		goto out;
	}

	/* The files themselves (issue 13): reached through directories of
	 * root or the qemu user that nobody else can write, never through a
	 * link, opened once and handed to qemu-img as descriptors. */
	struct trustfs_ids ids;
	if (trustfs_qemu_ids(TRUSTFS_QEMU_CONF, &ids, &why) < 0) {
		code = finish(PRIVHELPER_EXIT_FAILED, _("%1$s: refusing: %2$s"), a->name,
			      why ? why : "qemu.conf");
		goto out;
	}
	int rw = a->op == IMAGEOPS_COMMIT ? O_RDWR : O_RDONLY;
	if (trustfs_open(&ids, vm->disks[0].overlay, rw, &ov, &why) < 0) {
		code = finish(PRIVHELPER_EXIT_REFUSED, _("%1$s: refusing: %2$s"), a->name,
			      why ? why : "");
		goto out;
	}
	char *herr = NULL;
	if (!read_header(ov.fd, &ov_info, &herr)) {
		code = finish(PRIVHELPER_EXIT_REFUSED,
			      _("%1$s: refusing: %2$s is not a usable qcow2 image: %3$s"), a->name,
			      vm->disks[0].overlay, herr ? herr : "");
		free(herr);
		goto out;
	}
	if (!ov_info.backing_file || !vm->disks[0].backing_stored ||
	    strcmp(ov_info.backing_file, vm->disks[0].backing_stored) != 0) {
		code = finish(PRIVHELPER_EXIT_REFUSED,
			      _("%1$s: refusing: the overlay %2$s changed while being checked."),
			      a->name, vm->disks[0].overlay);
		goto out;
	}
	if (!ov_info.backing_format || !trustfs_format_ok(ov_info.backing_format)) {
		/* Without a recorded format qemu would probe the base: a raw
		 * image could then be taken for something else. */
		code = finish(
		    PRIVHELPER_EXIT_REFUSED,
		    _("%1$s: refusing: the overlay %2$s does not record its backing format."),
		    a->name, vm->disks[0].overlay);
		goto out;
	}
	if (a->op != IMAGEOPS_UNDO_DISCARD) {
		/* Everything the rebuild needs (a commit empties the overlay, so
		 * this is checked before it too): no encryption, data file,
		 * internal snapshots or bitmaps a fresh overlay would lose. */
		char *rerr = NULL;
		if (imageops_rebuild_check(vm->disks[0].overlay, vm->disks[0].backing_stored, vm->disks[0].backing_format,
					   &rerr) < 0) {
			code = finish(PRIVHELPER_EXIT_REFUSED, _("%1$s: refusing: %2$s"), a->name,
				      rerr ? rerr : "?");
			free(rerr);
			goto out;
		}
	}
	/* The base: never just any path a header names. It must be the
	 * backing store the domain's definition records, or a volume of a
	 * libvirt storage pool (where virt-manager and virsh put images). */
	base_path = image_resolve_backing(vm->disks[0].overlay, ov_info.backing_file);
	if (!base_path || base_path[0] != '/' || strstr(base_path, "://")) {
		code = finish(PRIVHELPER_EXIT_REFUSED,
			      _("%1$s: refusing: the overlay's backing file %2$s is not a local "
				"file."),
			      a->name, ov_info.backing_file);
		goto out;
	}
	char *recorded = recorded_backing(conn, a->uuid, a->target);
	bool base_known = recorded && strcmp(recorded, base_path) == 0;
	free(recorded);
	if (!base_known && !in_storage_pool(conn, base_path)) {
		code =
		    finish(PRIVHELPER_EXIT_REFUSED,
			   _("%1$s: refusing: the backing file %2$s is neither the backing store "
			     "recorded in the domain's definition nor a volume of a libvirt "
			     "storage pool."),
			   a->name, base_path);
		goto out;
	}
	if (trustfs_open(&ids, base_path, rw, &base, &why) < 0) {
		code = finish(PRIVHELPER_EXIT_REFUSED, _("%1$s: refusing: %2$s"), a->name,
			      why ? why : "");
		goto out;
	}
	/* Rule 2's last part: qemu's locks, on the files we hold. qemu-img
	 * would fail on them too; checking first keeps "in use" apart. */
	if (trustfs_locked(ov.fd) || trustfs_locked(base.fd)) {
		code = finish(PRIVHELPER_EXIT_IN_USE,
			      _("%s: the disk images are in use by another program (qemu's lock is "
				"held); nothing was changed."),
			      a->name);
		goto out;
	}

	if (a->op != IMAGEOPS_UNDO_DISCARD) {
		char *qerr = NULL;
		struct config qcfg = {0};
		qemu_img = runner_find_qemu_img(&qcfg, &qerr);
		if (!qemu_img) {
			code = finish(PRIVHELPER_EXIT_FAILED, "%s: %s", a->name,
				      qerr ? qerr : "qemu-img");
			free(qerr);
			goto out;
		}
	}

	log_info("helper: %s %s (%s) disk %s: overlay %s, base %s", imageops_op_name(a->op),
		 a->name, a->uuid, a->target, vm->disks[0].overlay, base_path);
	int r = 0;
	char *err = NULL;
	bool committed = false;
	struct helper_recheck hr = {.w = w, .vm = vm};
	switch (a->op) {
	case IMAGEOPS_COMMIT: {
		struct runner_status st;
		if (!trustfs_commit(qemu_img, &ov, &base, ov_info.backing_format, print_progress,
				    NULL, cancel_channel(), &st, &err)) {
			r = -ECHILD;
			break;
		}
		printf("\n"); /* end the progress records, as qemu-img does */
		if (st.exit_code != 0) {
			struct runner_result res;
			runner_status_view(&st, &res);
			enum imageops_commit_failure f =
			    imageops_commit_failure(&res, a->name, &err);
			if (st.cancelled) {
				/* Stopped by the applet's cancel: how far it got is unknown. */
				free(err);
				err = NULL;
				set_why(&err,
					_("%s: commit cancelled; the base may hold part of the "
					  "changes"),
					a->name);
				f = COMMIT_FAIL_PARTIAL;
			}
			runner_status_clear(&st);
			code = finish(f == COMMIT_FAIL_PARTIAL  ? PRIVHELPER_EXIT_PARTIAL
				      : f == COMMIT_FAIL_IN_USE ? PRIVHELPER_EXIT_IN_USE
								: PRIVHELPER_EXIT_FAILED,
				      "%s", err ? err : "");
			free(err);
			goto out;
		}
		if (st.cancelled)
			/* Said on stdout: the applet shows the real outcome. */
			printf(_("%s: the commit had already finished when the cancel arrived\n"),
			       a->name);
		runner_status_clear(&st);
		committed = true;
		/* The commit is complete: the base holds everything; the rebuild
		 * only replaces an overlay that qemu-img already emptied. */
		r = trustfs_rebuild(qemu_img, &ov, &ov_info, false, helper_recheck, &hr, &err);
		break;
	}
	case IMAGEOPS_REBUILD:
	case IMAGEOPS_DISCARD:
		r = trustfs_rebuild(qemu_img, &ov, &ov_info,
				    a->op == IMAGEOPS_DISCARD && a->keep_discarded, helper_recheck,
				    &hr, &err);
		break;
	case IMAGEOPS_UNDO_DISCARD:
		r = trustfs_undo_discard(&ids, &ov, &err);
		break;
	}
	if (r == 0) {
		code = finish(PRIVHELPER_EXIT_OK, "%s: %s", a->name, imageops_op_name(a->op));
	} else if (a->op == IMAGEOPS_COMMIT && committed) {
		/* The base holds the session; only the fresh overlay failed. */
		code = finish(PRIVHELPER_EXIT_COMMITTED, "%s", err ? err : strerror(-r));
	} else if (r == -EBUSY) {
		/* In use, or the domain started before the rename (rule 9):
		 * abandoned, the overlay untouched. */
		code = finish(PRIVHELPER_EXIT_IN_USE, "%s", err ? err : "");
	} else if (r == -EPERM) {
		code = finish(PRIVHELPER_EXIT_REFUSED, _("%1$s: refusing: %2$s"), a->name,
			      err ? err : "");
	} else {
		code = finish(PRIVHELPER_EXIT_FAILED, "%s: %s", a->name,
			      err ? err : strerror(r < 0 ? -r : EIO));
	}
	free(err);

out:
	virt_now_clear(&now);
	trustfs_close(&ov);
	trustfs_close(&base);
	free(base_path);
	image_info_clear(&ov_info);
	free(qemu_img);
	free(why);
	virt_watcher_destroy(w);
	if (model_ready)
		model_finish(&model);
	/* libvirt frees its handles from the loop: let it run once more. */
	if (loop)
		loop_iterate(loop, 0);
	loop_destroy(loop);
	return code;
}

int main(int argc, char **argv)
{
	struct helper_args a;
	i18n_init();
	log_init(LOG_WARN);
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return PRIVHELPER_EXIT_OK;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("vmoverlay-helper %s\n", VMO_VERSION);
		return PRIVHELPER_EXIT_OK;
	}
	if (!parse_args(argc, argv, &a))
		return PRIVHELPER_EXIT_USAGE;
	if (a.verbose)
		log_set_level(LOG_DEBUG);

	/* Security model (doc/vmoverlay-helper.8): not setuid; root through
	 * pkexec (PKEXEC_UID set, environment cleared) gets the system daemon
	 * only; root calling directly is trusted with any URI. */
	if (getuid() != 0 || geteuid() != 0)
		return finish(
		    PRIVHELPER_EXIT_NOT_ROOT,
		    _("vmoverlay-helper must run as root (vmoverlay starts it through pkexec)."));
	bool via_pkexec = getenv("PKEXEC_UID") != NULL;
	if (a.connect && via_pkexec)
		return finish(
		    PRIVHELPER_EXIT_NOT_ROOT,
		    _("vmoverlay-helper: --connect is not allowed through pkexec; the helper "
		      "works on qemu:///system only."));
	const char *uri = a.connect ? a.connect : SYSTEM_URI;
	/* The helper must not spawn a session daemon of its own. */
	setenv("LIBVIRT_AUTOSTART", "0", 1);
	umask(077);
	return run(&a, uri);
}
