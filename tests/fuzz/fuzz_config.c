/* libFuzzer target: the configuration's validation layer. Each input is
 * written as the configuration file and loaded through config_load(), the
 * same entry point the applet, --check-config and SIGHUP use (libconfig's
 * parser included: what it accepts is what our validation sees). The
 * environment is empty so only the file speaks.
 * Contract checked beyond "no crash, no leak, no hang": a rejected file
 * gives a message that starts with the file it is about (FILE:LINE:);
 * an accepted one yields a config the rest of the program may trust:
 * non-empty unique VM names, known policies, absolute paths, a valid disk
 * target, a non-negative reconcile interval. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

#define ENSURE(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_config: contract broken: %s\n", #cond);              \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static char conf_dir[64];
static char conf_path[96];

static const char *no_env(const char *name)
{
	return NULL;
}

static void remove_dir(void)
{
	unlink(conf_path);
	rmdir(conf_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* Unknown keys are logged as warnings: keep the run quiet. */
	log_init(LOG_ERR);
	const char *tmp = getenv("TMPDIR");
	snprintf(conf_dir, sizeof conf_dir, "%s/vmofzc.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(conf_dir)) {
		perror("fuzz_config: mkdtemp");
		exit(1);
	}
	snprintf(conf_path, sizeof conf_path, "%s/vmoverlay.conf", conf_dir);
	atexit(remove_dir);
	return 0;
}

static bool disk_ok(const char *s)
{
	if (!*s || strlen(s) > 32 || s[0] < 'a' || s[0] > 'z')
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789") == strlen(s);
}

static void check_errors(const char *err)
{
	static bool verbose;
	verbose = verbose || getenv("VMO_FUZZ_VERBOSE");
	/* "FILE:LINE: message" lines; the first names our file (absolute) or
	 * the file an @include pulled in (as the @include line wrote it, which
	 * is what libconfig reports). Messages quote values from the file,
	 * which may hold newlines, so only the first line's shape is certain. */
	const char *colon = err ? strstr(err, ": ") : NULL;
	const char *nl = err ? strchr(err, '\n') : NULL;
	bool named = colon && colon > err && (!nl || colon < nl);
	if (verbose || !named)
		fprintf(stderr, "fuzz_config: error text: %s\n", err ? err : "(none)");
	ENSURE(named);
}

static void check_config(const struct config *cfg)
{
	ENSURE(cfg->path && strcmp(cfg->path, conf_path) == 0);
	ENSURE(cfg->connect && *cfg->connect);
	ENSURE(cfg->reconcile_interval >= 0);
	ENSURE(!cfg->qemu_img || cfg->qemu_img[0] == '/');
	for (size_t i = 0; i < cfg->n_vms; i++) {
		const struct vm_config *v = &cfg->vms[i];
		ENSURE(v->name && *v->name);
		ENSURE((unsigned)v->policy < POLICY_COUNT);
		ENSURE(!v->disk || disk_ok(v->disk));
		ENSURE(!v->overlay || v->overlay[0] == '/');
		ENSURE(!v->base || v->base[0] == '/');
		ENSURE(!(v->overlay && v->base) || strcmp(v->overlay, v->base) != 0);
		ENSURE(config_find_vm(cfg, v->name) == v);
		for (size_t j = 0; j < i; j++)
			ENSURE(strcmp(cfg->vms[j].name, v->name) != 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = open(conf_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror("fuzz_config: open");
		abort();
	}
	size_t done = 0;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);
		if (n <= 0) {
			perror("fuzz_config: write");
			abort();
		}
		done += (size_t)n;
	}
	close(fd);

	struct cli cli = {.mode = CLI_CHECK_CONFIG, .config_path = conf_path};
	char *err = NULL;
	struct config *cfg = config_load(&cli, no_env, &err);
	if (cfg) {
		ENSURE(!err);
		check_config(cfg);
		config_free(cfg);
	} else {
		check_errors(err);
	}
	free(err);
	return 0;
}
