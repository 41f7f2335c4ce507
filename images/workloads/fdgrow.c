/*
 * fdgrow [ROUNDS]: make the kernel free high-order pages from softirq context.
 *
 * Each round a child raises its fd table to 100000 and then 500000 entries with dup2().
 * Growing the table frees the old one through an RCU callback, so __free_fdtable() ->
 * __free_pages_ok() takes zone->lock (irq-safe) in RCU_SOFTIRQ. A page hinting worker
 * that takes zone->lock with plain spin_lock() (hinting v2) is then reported by lockdep
 * as "inconsistent lock state". Prints "fdgrow: N rounds" and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 8;
	struct rlimit rl = { 1 << 20, 1 << 20 };

	if (setrlimit(RLIMIT_NOFILE, &rl)) {
		perror("fdgrow: setrlimit");
		return 1;
	}
	for (int r = 0; r < rounds; r++) {
		pid_t pid = fork();
		int status;

		if (pid < 0) {
			perror("fdgrow: fork");
			return 1;
		}
		if (pid == 0) {
			if (dup2(0, 100000) < 0 || dup2(0, 500000) < 0)
				_exit(1);
			_exit(0);
		}
		if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "fdgrow: round %d failed\n", r);
			return 1;
		}
		usleep(100000); /* let the RCU callback run between rounds */
	}
	printf("fdgrow: %d rounds\n", rounds);
	fflush(stdout);
	return 0;
}
