/*
 * pattern: write a known pattern into anonymous memory, free other memory, and check that
 * the pattern is still there. It catches a guest kernel that hints pages to the host while
 * they are still in use: the host discards them and the process then reads zeros.
 *
 *   pattern <hold_MiB> <churn_MiB> <rounds>
 *   pattern --hold-until-line [--hugetlb] <MiB>
 *   pattern --selftest-corrupt
 *
 * Every 8-byte word holds a value made from its own virtual address and a generation
 * number, and never zero (see pattern_word()). The hold region (hold_MiB) is mapped and
 * filled with generation 0. Round n (from 0) then: maps churn_MiB, fills it with
 * generation n, verifies it, unmaps it (freeing memory, which the guest kernel hints to
 * the host); calls sched_yield(); verifies the whole hold region against generation n;
 * rewrites it with generation n + 1; prints "round <n> ok". At the end it prints
 * "done <rounds> rounds, <MiB> MiB verified" (hold and churn, all rounds) and exits 0.
 *
 * On the first wrong word it prints one line and exits with status 3:
 *   MISMATCH region=<hold|churn> round=<n> offset=0x<hex> expected=<16 hex> found=<16 hex> words=<k>
 * where offset is the byte offset in the region and k is the number of wrong words in the
 * page holding it; a sentence saying the same goes to stderr. Usage and mmap errors go to
 * stderr with exit status 1.
 *
 * --hold-until-line maps <MiB>, fills it with generation 0, prints "filled <MiB>", blocks
 * until a line (or EOF) arrives on stdin, verifies the region, and prints "round 0 ok" and
 * "done 1 rounds, <MiB> MiB verified" (or the MISMATCH line, region=hold round=0): the
 * harness writes while the guest kernel may be handing pages to the host and checks after
 * the host is done with them. With --hugetlb the mapping comes from the hugetlb pool
 * (MAP_HUGETLB; <MiB> a multiple of the 2 MiB huge page size), so it holds exactly the
 * blocks the harness moved into the pool.
 *
 * --selftest-corrupt runs one round with hold 4 MiB, churn 4 MiB, and zeroes the hold
 * word at offset 0x2008 just before the hold is verified, so it must fail with
 * "MISMATCH region=hold round=0 offset=0x2008 ... found=0000000000000000 words=1".
 *
 * Output is flushed after every line so that the harness can follow it over SSH.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "args.h"
#include "stdin_line.h"

#define SELFTEST_MIB		4
#define SELFTEST_OFFSET		0x2008
#define EXIT_MISMATCH		3

/* Keep the compiler from proving a verify pass redundant with the fill that preceded it. */
#define compiler_barrier()	__asm__ __volatile__("" : : : "memory")

struct region {
	const char *name;
	uint64_t *words;
	size_t length;		/* bytes */
	long mib;
};

static long page_size;

/* A MiB count that still fits in a size_t once turned into bytes. */
static int parse_mib(const char *text, long *out)
{
	if (parse_positive(text, out) != 0 || (unsigned long)*out > (SIZE_MAX >> 20))
		return -1;
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pattern <hold_MiB> <churn_MiB> <rounds>\n"
			"       pattern --hold-until-line [--hugetlb] <MiB>\n"
			"       pattern --selftest-corrupt\n");
	exit(1);
}

/* Odd, hence never zero: a zero-filled (discarded) page can never pass for the pattern. */
static inline uint64_t pattern_word(const uint64_t *where, uint64_t gen)
{
	return (((uint64_t)(uintptr_t)where * 0x9E3779B97F4A7C15ULL) ^ (gen << 1)) | 1;
}

static int map_region_flags(struct region *region, const char *name, long mib, int flags)
{
	void *memory;

	region->name = name;
	region->mib = mib;
	region->length = (size_t)mib << 20;
	memory = mmap(NULL, region->length, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
	if (memory == MAP_FAILED) {
		fprintf(stderr, "pattern: mmap of %ld MiB (%s) failed: %s\n", mib, name,
			strerror(errno));
		return -1;
	}
	region->words = memory;
	return 0;
}

static int map_region(struct region *region, const char *name, long mib)
{
	return map_region_flags(region, name, mib, 0);
}

static int unmap_region(struct region *region)
{
	if (munmap(region->words, region->length) != 0) {
		fprintf(stderr, "pattern: munmap (%s) failed: %s\n", region->name, strerror(errno));
		return -1;
	}
	region->words = NULL;
	return 0;
}

static void fill(struct region *region, uint64_t gen)
{
	size_t count = region->length / sizeof(uint64_t), i;
	uint64_t *words = region->words;

	for (i = 0; i < count; i++)
		words[i] = pattern_word(&words[i], gen);
	compiler_barrier();
}

/* Report the wrong word at index @bad and how many words of its page are wrong; exit 3. */
static void __attribute__((noreturn))
report_mismatch(const struct region *region, long round, size_t bad, uint64_t gen)
{
	size_t per_page = (size_t)page_size / sizeof(uint64_t);
	size_t first = bad - bad % per_page, i, wrong = 0;
	const uint64_t *words = region->words;
	uint64_t expected = pattern_word(&words[bad], gen), found = words[bad];
	size_t offset = bad * sizeof(uint64_t);

	for (i = first; i < first + per_page; i++)
		if (words[i] != pattern_word(&words[i], gen))
			wrong++;

	printf("MISMATCH region=%s round=%ld offset=0x%zx expected=%016" PRIx64
	       " found=%016" PRIx64 " words=%zu\n",
	       region->name, round, offset, expected, found, wrong);
	fflush(stdout);
	fprintf(stderr, "pattern: in round %ld the %s region's word at byte offset 0x%zx reads "
		"%016" PRIx64 " instead of %016" PRIx64 "; %zu of the %zu words in that page "
		"are wrong, so memory this process wrote changed under it.\n",
		round, region->name, offset, found, expected, wrong, per_page);
	exit(EXIT_MISMATCH);
}

static void verify(const struct region *region, long round, uint64_t gen)
{
	size_t count = region->length / sizeof(uint64_t), i;
	const uint64_t *words = region->words;

	compiler_barrier();
	for (i = 0; i < count; i++) {
		if (words[i] != pattern_word(&words[i], gen))
			report_mismatch(region, round, i, gen);
	}
}

/* --hold-until-line: fill, wait for the harness, verify. */
static int hold_until_line(long mib, int flags)
{
	struct region hold;

	if (map_region_flags(&hold, "hold", mib, flags) != 0)
		return 1;
	fill(&hold, 0);
	printf("filled %ld\n", mib);
	fflush(stdout);
	wait_for_line();
	verify(&hold, 0, 0);
	printf("round 0 ok\ndone 1 rounds, %ld MiB verified\n", mib);
	fflush(stdout);
	return 0;
}

static int churn(long mib, long round, uint64_t gen)
{
	struct region region;

	if (map_region(&region, "churn", mib) != 0)
		return -1;
	fill(&region, gen);
	verify(&region, round, gen);
	return unmap_region(&region);
}

int main(int argc, char **argv)
{
	long hold_mib, churn_mib, rounds, round;
	unsigned long long verified_mib = 0;
	int selftest = 0;
	struct region hold;

	page_size = sysconf(_SC_PAGESIZE);
	if (page_size <= 0 || page_size % sizeof(uint64_t) != 0)
		page_size = 4096;

	if (argc >= 3 && strcmp(argv[1], "--hold-until-line") == 0) {
		int hugetlb = argc == 4 && strcmp(argv[2], "--hugetlb") == 0;

		if ((argc == 4 && !hugetlb) || argc > 4 || parse_mib(argv[argc - 1], &hold_mib) != 0 ||
		    (hugetlb && hold_mib % 2 != 0))
			usage();
		return hold_until_line(hold_mib, hugetlb ? MAP_HUGETLB : 0);
	}
	if (argc == 2 && strcmp(argv[1], "--selftest-corrupt") == 0) {
		selftest = 1;
		hold_mib = SELFTEST_MIB;
		churn_mib = SELFTEST_MIB;
		rounds = 1;
	} else if (argc != 4 || parse_mib(argv[1], &hold_mib) != 0 ||
		   parse_mib(argv[2], &churn_mib) != 0 || parse_positive(argv[3], &rounds) != 0) {
		usage();
	}

	if (map_region(&hold, "hold", hold_mib) != 0)
		return 1;
	fill(&hold, 0);

	for (round = 0; round < rounds; round++) {
		uint64_t gen = (uint64_t)round;

		if (churn(churn_mib, round, gen) != 0)
			return 1;
		sched_yield();
		if (selftest)
			hold.words[SELFTEST_OFFSET / sizeof(uint64_t)] = 0;
		verify(&hold, round, gen);
		fill(&hold, gen + 1);
		verified_mib += (unsigned long long)hold_mib + (unsigned long long)churn_mib;
		printf("round %ld ok\n", round);
		fflush(stdout);
	}

	printf("done %ld rounds, %llu MiB verified\n", rounds, verified_mib);
	fflush(stdout);
	return 0;
}
