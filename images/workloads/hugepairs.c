/*
 * hugepairs: hold hugetlb pages and give them back one buddy half at a time, so that the
 * guest kernel can be made to merge a returned block with a buddy freed meanwhile.
 *
 *   hugepairs <pages>
 *
 * Maps <pages> 2 MiB pages from the hugetlb pool (MAP_HUGETLB, populated), reads each
 * one's frame number from /proc/self/pagemap (root only) and sorts them into the lower
 * and upper halves of their 4 MiB (order-10) buddy pair. Prints
 * "mapped <pages> lower <L> upper <U>". Each line then read on stdin unmaps one half,
 * lower first, and prints "unmapped lower <L>", then "unmapped upper <U>"; the pages go
 * back to the pool, from which shrinking nr_hugepages hands them to the buddy allocator.
 * Exits 0 after the second half (or at EOF). Errors go to stderr with exit status 1.
 * Output is flushed after every line so that the harness can follow it over SSH.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "args.h"
#include "stdin_line.h"

#define HUGE_SIZE	(2UL << 20)
#define PFN_MASK	((1ULL << 55) - 1)	/* pagemap bits 0-54 */
#define PAGE_PRESENT	(1ULL << 63)
#define HUGE_ORDER	9

static void usage(void)
{
	fprintf(stderr, "usage: hugepairs <pages>\n");
	exit(1);
}

/* The frame number of the page at @address, or 0 on error (the message is printed). */
static uint64_t frame_of(int pagemap, const char *address, long page_size)
{
	uint64_t entry;
	off_t where = (off_t)((uintptr_t)address / (uintptr_t)page_size) * (off_t)sizeof(entry);

	if (pread(pagemap, &entry, sizeof(entry), where) != (ssize_t)sizeof(entry)) {
		fprintf(stderr, "hugepairs: reading /proc/self/pagemap failed: %s\n",
			strerror(errno));
		return 0;
	}
	if (!(entry & PAGE_PRESENT) || !(entry & PFN_MASK)) {
		fprintf(stderr, "hugepairs: no frame number in pagemap (not root?)\n");
		return 0;
	}
	return entry & PFN_MASK;
}

/* Unmap every page whose half (0 lower, 1 upper) is @half; returns how many. */
static long unmap_half(char *memory, const unsigned char *half, long pages, int which)
{
	long i, count = 0;

	for (i = 0; i < pages; i++) {
		if (half[i] != which)
			continue;
		if (munmap(memory + (size_t)i * HUGE_SIZE, HUGE_SIZE) != 0) {
			fprintf(stderr, "hugepairs: munmap failed: %s\n", strerror(errno));
			exit(1);
		}
		count++;
	}
	return count;
}

int main(int argc, char **argv)
{
	long pages, i, lower = 0, page_size = sysconf(_SC_PAGESIZE);
	unsigned char *half;
	char *memory;
	int pagemap;

	if (argc != 2 || parse_positive(argv[1], &pages) != 0 ||
	    (unsigned long)pages > SIZE_MAX / HUGE_SIZE)
		usage();
	if (page_size <= 0)
		page_size = 4096;

	memory = mmap(NULL, (size_t)pages * HUGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
	if (memory == MAP_FAILED) {
		fprintf(stderr, "hugepairs: mmap of %ld huge pages failed: %s\n", pages,
			strerror(errno));
		return 1;
	}
	half = calloc((size_t)pages, 1);
	pagemap = open("/proc/self/pagemap", O_RDONLY);
	if (!half || pagemap < 0) {
		fprintf(stderr, "hugepairs: setup failed: %s\n", strerror(errno));
		return 1;
	}
	for (i = 0; i < pages; i++) {
		char *page = memory + (size_t)i * HUGE_SIZE;
		uint64_t frame;

		page[0] = 1;	/* populated already; make sure */
		frame = frame_of(pagemap, page, page_size);
		if (!frame)
			return 1;
		half[i] = (frame >> HUGE_ORDER) & 1;
		lower += !half[i];
	}
	close(pagemap);
	printf("mapped %ld lower %ld upper %ld\n", pages, lower, pages - lower);
	fflush(stdout);

	if (!wait_for_line())
		return 0;
	printf("unmapped lower %ld\n", unmap_half(memory, half, pages, 0));
	fflush(stdout);
	if (!wait_for_line())
		return 0;
	printf("unmapped upper %ld\n", unmap_half(memory, half, pages, 1));
	fflush(stdout);
	return 0;
}
