/*
 * kvfsctl interactive mode: `kvfsctl` with no command on a terminal.
 *
 * One session (the cluster opened once, lazily as batch mode: the prompt
 * comes at once, small values go over TCP), a "kvfs> " prompt read with
 * libedit (line editing, emacs keys, ~/.editrc), and the command lines of
 * batch mode, run by batch.c's session_line, plus help and quit/exit;
 * Ctrl-D ends it with status 0. History is kept in $KVFSCTL_HISTORY, else
 * ~/.kvfsctl_history (none when HOME is unset or the variable is empty):
 * plain text, one line each, the last HISTORY_MAX lines, mode 0600, written
 * after every line so a killed session keeps what it ran.
 */

#include <errno.h>
#include <fcntl.h>
#include <histedit.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/kvfsctl/kvfsctl.h"

#define HISTORY_MAX 1000

static const char *prompt(EditLine *el)
{
	(void)el;
	return "kvfs> ";
}

static void help(FILE *f)
{
	fputs("commands, one a line (words split at blanks; \"double quotes\" keep blanks;\n"
	      "escapes \\n \\t \\r \\0 \\\\ \\\" \\xHH and \"\\ \" as in batch mode):\n"
	      "  put KEY VALUE   store VALUE as the value of KEY\n"
	      "  get KEY         print the value, quoted and escaped\n"
	      "  rm KEY          delete KEY\n"
	      "  stat KEY        size, version, mode, times, expiry and server of KEY\n"
	      "  ping            round trip to every server\n"
	      "  help            this list\n"
	      "  quit, exit      leave (so does Ctrl-D)\n",
	      f);
}

/* The history file's path (malloc'd), or NULL for none. */
static char *history_path(void)
{
	const char *env = getenv("KVFSCTL_HISTORY"), *home;
	char *p = NULL;

	if (env)
		return *env ? strdup(env) : NULL;
	home = getenv("HOME");
	if (!home || !*home)
		return NULL;
	if (asprintf(&p, "%s/.kvfsctl_history", home) < 0)
		return NULL;
	return p;
}

/* Lines of path into h, oldest first; a missing file is an empty history. */
static void history_load(History *h, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	HistEvent ev;

	if (!f) {
		if (errno != ENOENT)
			fail("warning: history %s: %s", path, strerror(errno));
		return;
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (len > 0)
			history(h, &ev, H_ENTER, line);
	}
	free(line);
	fclose(f);
}

/* h into path, oldest first; false (reported once per session) on failure. */
static bool history_save(History *h, const char *path, bool *warned)
{
	HistEvent ev;
	FILE *f;
	int fd, rc;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f) {
		if (fd >= 0)
			close(fd);
		goto failed;
	}
	for (rc = history(h, &ev, H_LAST); rc != -1; rc = history(h, &ev, H_PREV))
		fprintf(f, "%s\n", ev.str);
	if (ferror(f)) {
		fclose(f);
		errno = EIO;
		goto failed;
	}
	if (fclose(f) == 0)
		return true;
failed:
	if (!*warned)
		fail("warning: history %s: %s", path, strerror(errno));
	*warned = true;
	return false;
}

/* Only "quit" or "exit" between blanks. */
static bool is_word(const char *line, const char *word)
{
	size_t n = strlen(word);

	while (*line == ' ' || *line == '\t')
		line++;
	if (strncmp(line, word, n) != 0)
		return false;
	for (line += n; *line == ' ' || *line == '\t'; line++)
		;
	return !*line;
}

int cmd_interactive(struct ctl *c)
{
	struct session s;
	EditLine *el;
	History *h;
	HistEvent ev;
	char *path, *line = NULL;
	const char *in;
	bool warned = false;
	int count, ret = 0;

	if (ctl_open_flags(c, KVFS_OPEN_LAZY_FABRIC) < 0 || session_init(&s, c, stdout) < 0)
		return EXIT_FAIL;
	setlocale(LC_CTYPE, ""); /* libedit reads multibyte input by the locale */
	el = el_init("kvfsctl", stdin, stdout, stderr);
	h = history_init();
	if (!el || !h) {
		fail("interactive: cannot set up line editing");
		if (el)
			el_end(el);
		if (h)
			history_end(h);
		session_free(&s);
		return EXIT_FAIL;
	}
	history(h, &ev, H_SETSIZE, HISTORY_MAX);
	history(h, &ev, H_SETUNIQUE, 1); /* no runs of the same line */
	el_set(el, EL_EDITOR, "emacs");
	el_set(el, EL_PROMPT, prompt);
	el_set(el, EL_HIST, history, h);
	el_set(el, EL_SIGNAL, 1); /* the terminal is restored on signals */
	el_source(el, NULL);	  /* ~/.editrc, as other libedit programs */
	path = history_path();
	if (path)
		history_load(h, path);

	while ((in = el_gets(el, &count)) != NULL && count > 0) {
		size_t len = strlen(in);

		free(line);
		line = strdup(in);
		if (!line) {
			fail("interactive: %s", strerror(ENOMEM));
			ret = EXIT_FAIL;
			break;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (strspn(line, " \t") == len)
			continue;
		if (is_word(line, "quit") || is_word(line, "exit"))
			break;
		history(h, &ev, H_ENTER, line);
		if (path)
			history_save(h, path, &warned);
		if (is_word(line, "help"))
			help(stdout);
		else
			session_line(&s, line, len);
		fflush(stdout);
	}
	if (!in)
		putchar('\n'); /* Ctrl-D: the shell's prompt on a line of its own */
	free(line);
	free(path);
	el_end(el);
	history_end(h);
	session_free(&s);
	return ret;
}
