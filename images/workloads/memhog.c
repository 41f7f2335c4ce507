/*
 * memhog: allocate and touch anonymous memory, hold it until told, then give it back.
 *
 *   memhog [--cycles N] [--trickle-ms MS] <MiB>
 *
 * Each cycle: mmap <MiB> of anonymous memory, write to every page, print "touched <MiB>",
 * block until a line (or EOF) arrives on stdin, munmap, print "released". With --trickle-ms the
 * release is 1 MiB at a time with MS milliseconds between (a slow, steady stream of frees). Exit 0 after the
 * last cycle; errors go to stderr with exit status 1. Output is flushed after every line so
 * that the harness can follow it over SSH.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "args.h"
#include "stdin_line.h"

static long trickle_ms;

static void usage(void)
{
	fprintf(stderr, "usage: memhog [--cycles N] [--trickle-ms MS] <MiB>\n");
	exit(1);
}

static int one_cycle(long mib, long page_size)
{
	size_t length = (size_t)mib << 20;
	char *memory;
	size_t offset;

	memory = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (memory == MAP_FAILED) {
		fprintf(stderr, "memhog: mmap of %ld MiB failed: %s\n", mib, strerror(errno));
		return -1;
	}
	/* A non-zero byte per page: the kernel must back every page with a real frame. */
	for (offset = 0; offset < length; offset += (size_t)page_size)
		memory[offset] = (char)(offset / (size_t)page_size) | 1;
	printf("touched %ld\n", mib);
	fflush(stdout);

	wait_for_line();

	if (trickle_ms > 0) {
		for (offset = 0; offset + (1UL << 20) < length; offset += 1UL << 20) {
			if (munmap(memory + offset, 1UL << 20) != 0)
				break;
			usleep((useconds_t)trickle_ms * 1000);
		}
		memory += offset;
		length -= offset;
	}
	if (munmap(memory, length) != 0) {
		fprintf(stderr, "memhog: munmap failed: %s\n", strerror(errno));
		return -1;
	}
	printf("released\n");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	long cycles = 1, mib, page_size, i;
	int arg = 1;

	while (argc > arg + 1 && strncmp(argv[arg], "--", 2) == 0) {
		if (strcmp(argv[arg], "--cycles") == 0 && parse_positive(argv[arg + 1], &cycles) == 0)
			arg += 2;
		else if (strcmp(argv[arg], "--trickle-ms") == 0 &&
			 parse_positive(argv[arg + 1], &trickle_ms) == 0)
			arg += 2;
		else
			usage();
	}
	if (argc != arg + 1 || parse_positive(argv[arg], &mib) != 0)
		usage();

	page_size = sysconf(_SC_PAGESIZE);
	for (i = 0; i < cycles; i++) {
		if (one_cycle(mib, page_size) != 0)
			return 1;
	}
	return 0;
}
