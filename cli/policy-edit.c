/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * policy-edit: the file is handled as lines. A section is its header line through the line
 * before the next header, less the comment lines right above that next header (with no blank
 * line between: they introduce it) — those and everything outside the section stay byte for
 * byte. Headers are recognised as libinih does (leading white space, "[", up to "]"), and
 * "policy NAME" as agent/settings.c names it, so the section we cut is the one the agent reads.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "policy-edit.h"
#include "settings.h"
#include "util.h"

typedef struct EditLine {
	size_t start, end; /* end: after the line's '\n', or the end of the file */
} EditLine;

typedef struct EditFile {
	char *data;
	size_t len;
	bool exists;
	mode_t mode;
	EditLine *lines;
	size_t n_lines;
} EditFile;

static void edit_file_deinit(EditFile *f)
{
	free(f->data);
	free(f->lines);
}

/* The line's text after leading white space (and the UTF-8 BOM libinih skips). */
static const char *line_text(const EditFile *f, size_t i, size_t *ret_len)
{
	size_t s = f->lines[i].start, e = f->lines[i].end;

	if (s == 0 && e >= 3 && memcmp(f->data, "\xEF\xBB\xBF", 3) == 0)
		s = 3;
	while (s < e && f->data[s] != '\n' && isspace((unsigned char)f->data[s]))
		s++;
	*ret_len = e - s;
	return f->data + s;
}

static bool line_is_blank(const EditFile *f, size_t i)
{
	size_t len;
	const char *t = line_text(f, i, &len);

	return len == 0 || t[0] == '\n';
}

static bool line_is_comment(const EditFile *f, size_t i)
{
	size_t len;
	const char *t = line_text(f, i, &len);

	return len > 0 && (t[0] == '#' || t[0] == ';');
}

/* Whether line i is a section header; its text between the brackets in ret_*. */
static bool line_section(const EditFile *f, size_t i, const char **ret_sec, size_t *ret_len)
{
	size_t len;
	const char *t = line_text(f, i, &len);
	const char *close;

	if (len == 0 || t[0] != '[')
		return false;
	close = memchr(t, ']', len);
	if (!close || memchr(t, '\n', (size_t)(close - t)))
		return false;
	*ret_sec = t + 1;
	*ret_len = (size_t)(close - t - 1);
	return true;
}

/* Whether line i is the header of [policy name] (settings.c's reading of "policy NAME"). */
static bool line_is_policy(const EditFile *f, size_t i, const char *name)
{
	const char *sec;
	size_t len;

	if (!line_section(f, i, &sec, &len) || len < 7 || memcmp(sec, "policy", 6) != 0 ||
	    (sec[6] != ' ' && sec[6] != '\t'))
		return false;
	sec += 6;
	len -= 6;
	while (len && (*sec == ' ' || *sec == '\t')) {
		sec++;
		len--;
	}
	return len == strlen(name) && memcmp(sec, name, len) == 0;
}

static int edit_file_read(const char *path, EditFile *f, CaError *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	size_t n = 0;

	*f = (EditFile){.mode = 0600};
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 || fstat(fd, &st) < 0)
		return ca_error_set(err, POLICY_EDIT_E_FILE, "cannot read %s: %m", path);
	if (!S_ISREG(st.st_mode))
		return ca_error_set(err, POLICY_EDIT_E_FILE, "%s is not a regular file", path);
	if ((uint64_t)st.st_size > POLICY_EDIT_FILE_MAX)
		return ca_error_set(err, POLICY_EDIT_E_FILE,
				    "%s is larger than %u bytes: edit it by hand", path,
				    POLICY_EDIT_FILE_MAX);
	f->exists = true;
	f->mode = st.st_mode & 07777;
	f->data = malloc((size_t)st.st_size + 1);
	if (!f->data)
		return -ENOMEM;
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, f->data + n, (size_t)st.st_size - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ca_error_set(err, POLICY_EDIT_E_FILE, "cannot read %s: %m", path);
		if (r == 0)
			break;
		n += (size_t)r;
	}
	f->len = n;
	f->data[n] = 0;
	for (size_t s = 0; s < n;) {
		const char *nl = memchr(f->data + s, '\n', n - s);
		size_t e = nl ? (size_t)(nl - f->data) + 1 : n;
		EditLine *grown = realloc(f->lines, (f->n_lines + 1) * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		f->lines = grown;
		f->lines[f->n_lines++] = (EditLine){s, e};
		s = e;
	}
	return 0;
}

/* The new section's text; each key and value was checked by check_section() first. */
static char *section_text(const char *name, const PolicyEditKey *keys, size_t n_keys)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *m = open_memstream(&buf, &size);

	if (!m)
		return NULL;
	fprintf(m, "[policy %s]\n", name);
	for (size_t i = 0; i < n_keys; i++)
		fprintf(m, "%s = %s\n", keys[i].key, keys[i].value);
	if (fclose(m) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * The new section, through the agent's parser, key by key (the messages name the key), into
 * ret (a one-rule PolicyConfig). Values must also survive the trip through the file: one
 * line, no white space at the ends (libinih strips it), no " #" or " ;" (comments).
 */
static int check_section(const char *name, const PolicyEditKey *keys, size_t n_keys,
			 PolicyConfig *ret, CaError *err)
{
	size_t len = strlen(name);
	CaError e = {0};
	int r;

	if (len == 0 || len > POLICY_EDIT_NAME_MAX)
		return ca_error_set(err, POLICY_EDIT_E_INVALID,
				    "a policy name has 1 to %d characters", POLICY_EDIT_NAME_MAX);
	for (const char *c = name; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._-", *c))
			return ca_error_set(err, POLICY_EDIT_E_INVALID,
					    "the policy name \"%.64s\" may hold only letters, "
					    "digits, \".\", \"_\" and \"-\"",
					    name);
	for (size_t i = 0; i < n_keys; i++) {
		const char *v = keys[i].value;
		size_t vlen = strlen(v);

		for (const char *c = v; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				return ca_error_set(err, POLICY_EDIT_E_INVALID,
						    "%s: the value holds a control character "
						    "(a line break?)",
						    keys[i].key);
		if (vlen == 0 || isspace((unsigned char)v[0]) ||
		    isspace((unsigned char)v[vlen - 1]))
			return ca_error_set(err, POLICY_EDIT_E_INVALID,
					    "%s: the value \"%s\" is empty or starts or ends with "
					    "white space",
					    keys[i].key, v);
		if (strstr(v, " #") || strstr(v, " ;"))
			return ca_error_set(err, POLICY_EDIT_E_INVALID,
					    "%s: \"%s\" holds \" #\" or \" ;\", which the "
					    "configuration reads as the start of a comment",
					    keys[i].key, v);
		r = policy_config_section_key(ret, name, i == 0, keys[i].key, v, &e);
		if (r == -ENOMEM)
			return r;
		if (r)
			return ca_error_set(err, POLICY_EDIT_E_INVALID, "%s", e.message);
	}
	if (n_keys == 0)
		return ca_error_set(err, POLICY_EDIT_E_INVALID, "a policy needs an identity");
	if (policy_config_check(ret, "the new section", &e))
		return ca_error_set(err, POLICY_EDIT_E_INVALID, "%s", e.message);
	return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Writes the parts (pointer, length pairs) to a temporary file next to path with mode, and
 * checks it with the agent's parser: the file must load, and hold want (or, want NULL, no
 * [policy name]). Returns 0 with the temporary file's name in ret_tmp.
 */
static int write_checked(const char *path, mode_t mode, const char *const *parts,
			 const size_t *lens, size_t n_parts, const char *name,
			 const PolicyRule *want, char **ret_tmp, CaError *err)
{
	_cleanup_free_ char *tmp = NULL, *dircopy = strdup(path), *base = strdup(path);
	_cleanup_close_ int fd = -1;
	Settings *s = NULL;
	CaError e = {0};
	const PolicyRule *got = NULL;
	int r;

	if (!dircopy || !base ||
	    asprintf(&tmp, "%s/.%s.XXXXXX", dirname(dircopy), basename(base)) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return ca_error_set(err, POLICY_EDIT_E_FILE, "cannot create %s: %m", tmp);
	r = fchmod(fd, mode) < 0 ? -errno : 0;
	for (size_t i = 0; r == 0 && i < n_parts; i++)
		r = write_all(fd, parts[i], lens[i]);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && close(fd) < 0)
		r = -errno;
	fd = -1;
	if (r) {
		unlink(tmp);
		return ca_error_set(err, POLICY_EDIT_E_FILE, "cannot write %s: %s", tmp,
				    strerror(-r));
	}
	r = settings_load(tmp, true, &s, &e);
	if (r == 0) {
		for (size_t i = 0; i < s->policy.n_rules; i++)
			if (strcmp(s->policy.rules[i].name, name) == 0)
				got = &s->policy.rules[i];
		if (want ? !got || !policy_rule_equal(got, want) : got != NULL)
			r = ca_error_set(&e, CA_E_FAILED,
					 "[policy %s] does not read back as written", name);
	}
	settings_free(s);
	if (r) {
		unlink(tmp);
		if (r == -ENOMEM)
			return r;
		return ca_error_set(err, POLICY_EDIT_E_FILE,
				    "the new configuration would not load, so %s is left as it "
				    "was: %s",
				    path, e.message);
	}
	*ret_tmp = TAKE_PTR(tmp);
	return 0;
}

static int edit_locked(const char *path, const char *name, const PolicyEditKey *keys, size_t n_keys,
		       bool force, bool *ret_replaced, CaError *err)
{
	_cleanup_(edit_file_deinit) EditFile f = {0};
	_cleanup_free_ char *section = NULL, *tmp = NULL;
	PolicyConfig want;
	Settings *now = NULL;
	size_t h = SIZE_MAX, e, k, cut_start, cut_end;
	const char *parts[4];
	size_t lens[4], n_parts = 0;
	int r;

	policy_config_init(&want);
	if (keys) {
		r = check_section(name, keys, n_keys, &want, err);
		if (r == 0 && !(section = section_text(name, keys, n_keys)))
			r = -ENOMEM;
		if (r)
			goto out;
	}
	r = edit_file_read(path, &f, err);
	if (r)
		goto out;
	/* A file that does not load now is not ours to change: its owner should see why. */
	if (f.exists) {
		CaError lerr = {0};

		r = settings_load(path, true, &now, &lerr);
		settings_free(now);
		if (r) {
			r = r == -ENOMEM ? r
					 : ca_error_set(err, POLICY_EDIT_E_FILE,
							"%s; nothing was changed: fix the file "
							"first",
							lerr.message);
			goto out;
		}
	}
	for (size_t i = 0; i < f.n_lines && h == SIZE_MAX; i++)
		if (line_is_policy(&f, i, name))
			h = i;
	if (h == SIZE_MAX && !keys) {
		r = ca_error_set(err, POLICY_EDIT_E_NOT_FOUND, "%s has no [policy %s]", path, name);
		goto out;
	}
	if (h != SIZE_MAX && keys && !force) {
		r = ca_error_set(err, POLICY_EDIT_E_EXISTS,
				 "%s already has a [policy %s]: nothing was changed (--force "
				 "replaces it)",
				 path, name);
		goto out;
	}
	*ret_replaced = h != SIZE_MAX;

	if (h == SIZE_MAX) {
		/* Add at the end, after a blank line. */
		bool nl = f.len > 0 && f.data[f.len - 1] != '\n';
		bool blank = f.len > 0 && !line_is_blank(&f, f.n_lines - 1);

		parts[n_parts] = f.data ? f.data : "";
		lens[n_parts++] = f.len;
		parts[n_parts] = nl ? "\n\n" : "\n";
		lens[n_parts++] = nl ? 2 : blank ? 1 : 0;
		parts[n_parts] = section;
		lens[n_parts++] = strlen(section);
	} else {
		/* The section: up to the next header, less the comments right above it. */
		for (e = h + 1; e < f.n_lines; e++) {
			const char *sec;
			size_t len;

			if (line_section(&f, e, &sec, &len))
				break;
		}
		if (e < f.n_lines)
			while (e > h + 1 && line_is_comment(&f, e - 1))
				e--;
		/* Its keys (and comments among them) end before the blank lines at its end. */
		for (k = e; k > h + 1 && line_is_blank(&f, k - 1); k--)
			;
		if (keys) {
			/* Replaced where it is: its place decides which rule applies first. */
			cut_start = f.lines[h].start;
			cut_end = k < f.n_lines ? f.lines[k].start : f.len;
		} else {
			/* Removed with the blank lines after it; the last one also with the
			 * blank lines before it, so the file does not end in blank lines. */
			cut_start = f.lines[h].start;
			cut_end = e < f.n_lines ? f.lines[e].start : f.len;
			if (e >= f.n_lines)
				for (size_t b = h; b > 0 && line_is_blank(&f, b - 1); b--)
					cut_start = f.lines[b - 1].start;
		}
		/* A UTF-8 BOM at the start of the file is the file's, not the section's. */
		if (cut_start == 0 && f.len >= 3 && memcmp(f.data, "\xEF\xBB\xBF", 3) == 0)
			cut_start = 3;
		parts[n_parts] = f.data;
		lens[n_parts++] = cut_start;
		if (keys) {
			/* A last line without '\n' that we replace gets one (the section ends
			 * with one). */
			parts[n_parts] = section;
			lens[n_parts++] = strlen(section);
		}
		parts[n_parts] = f.data + cut_end;
		lens[n_parts++] = f.len - cut_end;
	}

	r = write_checked(path, f.mode, parts, lens, n_parts, name, keys ? &want.rules[0] : NULL,
			  &tmp, err);
	if (r)
		goto out;
	if (rename(tmp, path) < 0) {
		r = ca_error_set(err, POLICY_EDIT_E_FILE, "cannot replace %s: %m", path);
		unlink(tmp);
	}
out:
	policy_config_deinit(&want);
	return r;
}

int policy_edit_apply(const char *path, const char *name, const PolicyEditKey *keys, size_t n_keys,
		      bool force, bool *ret_replaced, CaError *err)
{
	_cleanup_free_ char *real = realpath(path, NULL), *dircopy = NULL;
	_cleanup_close_ int dfd = -1;
	bool replaced = false;
	int r;

	/* A symbolic link is followed: the file it points to is edited, the link stays. */
	if (!real && errno != ENOENT)
		return ca_error_set(err, POLICY_EDIT_E_FILE, "cannot read %s: %m", path);
	if (real)
		path = real;
	else if (path[0] != '/')
		return ca_error_set(err, POLICY_EDIT_E_FILE,
				    "%s does not exist; name a new configuration by its full path",
				    path);
	if (!real && !keys)
		return ca_error_set(err, POLICY_EDIT_E_NOT_FOUND,
				    "%s does not exist, so it has no [policy %s]", path, name);
	dircopy = strdup(path);
	if (!dircopy)
		return -ENOMEM;
	if (!real) {
		r = mkdir_parents(path, 0700);
		if (r)
			return ca_error_set(err, POLICY_EDIT_E_FILE,
					    "cannot create the folder of %s: %s", path,
					    strerror(-r));
	}
	/* The folder's lock serialises edits: rename() replaces the file, so not the file's. */
	dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || flock(dfd, LOCK_EX) < 0)
		return ca_error_set(err, POLICY_EDIT_E_FILE, "cannot lock the folder of %s: %m",
				    path);
	r = edit_locked(path, name, keys, n_keys, force, &replaced, err);
	if (r == 0) {
		/* The rename is durable once the folder is on disk. */
		(void)fsync(dfd);
		*ret_replaced = replaced;
	}
	return r;
}
