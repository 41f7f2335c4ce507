/*
 * tmpfill: occupy tmpfs (page cache / shmem) memory with a file, then delete it on request.
 *
 *   tmpfill <path> <MiB>
 *
 * Writes <MiB> of non-zero data to <path>, fsyncs and closes it, prints "filled", blocks
 * until a line (or EOF) arrives on stdin, unlinks the file and prints "deleted". Errors go
 * to stderr with exit status 1 (a partly written file is removed).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "stdin_line.h"

#define CHUNK (1L << 20)

static int write_all(int fd, const char *buffer, size_t length)
{
	while (length > 0) {
		ssize_t written = write(fd, buffer, length);

		if (written < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buffer += written;
		length -= (size_t)written;
	}
	return 0;
}

static int fill(const char *path, long mib)
{
	static char chunk[CHUNK];
	long i;
	int fd;

	memset(chunk, 0xa5, sizeof(chunk));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		fprintf(stderr, "tmpfill: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (i = 0; i < mib; i++) {
		if (write_all(fd, chunk, sizeof(chunk)) != 0) {
			fprintf(stderr, "tmpfill: writing %s failed after %ld MiB: %s\n", path, i,
				strerror(errno));
			close(fd);
			unlink(path);
			return -1;
		}
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fprintf(stderr, "tmpfill: closing %s failed: %s\n", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long mib;

	if (argc != 3 || parse_positive(argv[2], &mib) != 0) {
		fprintf(stderr, "usage: tmpfill <path> <MiB>\n");
		return 1;
	}
	if (fill(argv[1], mib) != 0)
		return 1;
	printf("filled\n");
	fflush(stdout);

	wait_for_line();

	if (unlink(argv[1]) != 0) {
		fprintf(stderr, "tmpfill: cannot delete %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("deleted\n");
	fflush(stdout);
	return 0;
}
