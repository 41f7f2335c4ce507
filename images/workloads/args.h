/* Argument parsing shared by the workloads (each is one static binary: header-only). */
#ifndef PHH_WORKLOADS_ARGS_H
#define PHH_WORKLOADS_ARGS_H

#include <errno.h>
#include <stdlib.h>

/* A positive decimal number, all of `text`: 0 and *out set, or -1. */
static int parse_positive(const char *text, long *out)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno || end == text || *end != '\0' || value <= 0)
		return -1;
	*out = value;
	return 0;
}

#endif
