/*
 * faultbench: a page-fault micro-benchmark in the style of will-it-scale's page_fault1.
 *
 *   faultbench <MiB> <seconds>
 *
 * Repeats for about <seconds>: mmap <MiB> of anonymous memory, write one byte to every
 * page (one page fault each), munmap it (the pages go back to the allocator, where free
 * page hinting or reporting may hand them to the host, to be faulted in again next time).
 * Prints "faults <N> seconds <S> per_s <N/S>" and exits 0; errors go to stderr, exit 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "args.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long mib, seconds, page_size = sysconf(_SC_PAGESIZE);
	unsigned long long faults = 0;
	double start, elapsed;
	size_t length, offset;

	if (argc != 3 || parse_positive(argv[1], &mib) || parse_positive(argv[2], &seconds)) {
		fprintf(stderr, "usage: faultbench <MiB> <seconds>\n");
		return 1;
	}
	length = (size_t)mib << 20;
	start = now();
	do {
		char *memory = mmap(NULL, length, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (memory == MAP_FAILED) {
			fprintf(stderr, "faultbench: mmap of %ld MiB failed: %s\n", mib,
				strerror(errno));
			return 1;
		}
		for (offset = 0; offset < length; offset += (size_t)page_size)
			memory[offset] = 1;
		faults += length / (size_t)page_size;
		munmap(memory, length);
		elapsed = now() - start;
	} while (elapsed < seconds);
	printf("faults %llu seconds %.3f per_s %.0f\n", faults, elapsed, faults / elapsed);
	return 0;
}
