/* Waiting on the harness: each workload that holds memory until told is one static binary,
 * so this is header-only. */
#ifndef PHH_WORKLOADS_STDIN_LINE_H
#define PHH_WORKLOADS_STDIN_LINE_H

#include <stdio.h>
#include <string.h>

/* Block until a full line on stdin (1) or EOF (0); the content does not matter. */
static int wait_for_line(void)
{
	char line[256];

	while (fgets(line, sizeof(line), stdin)) {
		if (strchr(line, '\n'))
			return 1;
	}
	return 0;
}

#endif
