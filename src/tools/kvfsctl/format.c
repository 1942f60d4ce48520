/*
 * kvfsctl format: how stat, ls -l and stats --json print times, modes,
 * owners, sizes and strings. Times are local; a uid or gid the writer never
 * stored prints as "-".
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tools/kvfsctl/kvfsctl.h"

void fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 6) {
		v /= 1024;
		u++;
	}
	if (u == 0 || v == (double)(uint64_t)v)
		snprintf(buf, len, "%" PRIu64 " %s", (uint64_t)v, unit[u]);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

void split_ns(int64_t ns, time_t *sec, long *nsec)
{
	int64_t s = ns / 1000000000;
	int64_t r = ns % 1000000000;

	if (r < 0) {
		s--;
		r += 1000000000;
	}
	*sec = (time_t)s;
	*nsec = (long)r;
}

void fmt_minutes(time_t t, char sep, char *buf, size_t len)
{
	struct tm tm;
	char f[32];

	snprintf(f, sizeof(f), "%%Y-%%m-%%d%c%%H:%%M", sep);
	if (!localtime_r(&t, &tm) || strftime(buf, len, f, &tm) == 0)
		snprintf(buf, len, "?");
}

void fmt_iso(time_t t, long ns, char *buf, size_t len)
{
	struct tm tm;
	char base[64], zone[16], frac[24] = "";

	if (!localtime_r(&t, &tm) || strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
	    strftime(zone, sizeof(zone), "%z", &tm) == 0) {
		snprintf(buf, len, "?");
		return;
	}
	if (ns >= 0)
		snprintf(frac, sizeof(frac), ".%09ld", ns);
	if (strlen(zone) == 5) /* +hhmm -> +hh:mm */
		snprintf(buf, len, "%s%s%.3s:%.2s", base, frac, zone, zone + 3);
	else
		snprintf(buf, len, "%s%s%s", base, frac, zone);
}

const char *fmt_id(uint32_t id, char buf[12])
{
	if (id == KVFS_ID_UNSET)
		return "-";
	snprintf(buf, 12, "%" PRIu32, id);
	return buf;
}

void fmt_mode(uint32_t m, char s[11])
{
	switch (m & S_IFMT) {
	case S_IFDIR:
		s[0] = 'd';
		break;
	case S_IFLNK:
		s[0] = 'l';
		break;
	case S_IFCHR:
		s[0] = 'c';
		break;
	case S_IFBLK:
		s[0] = 'b';
		break;
	case S_IFIFO:
		s[0] = 'p';
		break;
	case S_IFSOCK:
		s[0] = 's';
		break;
	default:
		s[0] = '-';
		break;
	}
	s[1] = (m & S_IRUSR) ? 'r' : '-';
	s[2] = (m & S_IWUSR) ? 'w' : '-';
	s[3] = (m & S_ISUID) ? ((m & S_IXUSR) ? 's' : 'S') : ((m & S_IXUSR) ? 'x' : '-');
	s[4] = (m & S_IRGRP) ? 'r' : '-';
	s[5] = (m & S_IWGRP) ? 'w' : '-';
	s[6] = (m & S_ISGID) ? ((m & S_IXGRP) ? 's' : 'S') : ((m & S_IXGRP) ? 'x' : '-');
	s[7] = (m & S_IROTH) ? 'r' : '-';
	s[8] = (m & S_IWOTH) ? 'w' : '-';
	s[9] = (m & S_ISVTX) ? ((m & S_IXOTH) ? 't' : 'T') : ((m & S_IXOTH) ? 'x' : '-');
	s[10] = '\0';
}

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}
