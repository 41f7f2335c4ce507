/*
 * The accelerator probe: a multiboot kernel of a few instructions that proves a vCPU runs
 * guest code under the accelerator, without needing a built Linux kernel.
 *
 * QEMU's multiboot loader enters _start in 32-bit protected mode. The probe turns on
 * paging (one 4 MiB identity page: PSE), sums 1..1000 in a loop and writes a result to
 * the isa-debug-exit device at port 0xf4. QEMU then exits with status (value << 1) | 1:
 * 85 (value 0x2a) when the sum is right, 43 (0x15) when it is wrong. A vCPU that cannot
 * run (broken nested KVM) makes QEMU fail at once, or hang until the probe's deadline.
 */
	.set MULTIBOOT_MAGIC, 0x1BADB002
	.set EXIT_PORT, 0xf4
	.set EXIT_OK, 0x2a
	.set EXIT_WRONG_SUM, 0x15

	.section .multiboot, "a"
	.align 4
	.long MULTIBOOT_MAGIC
	.long 0				/* flags: none (QEMU loads the ELF itself) */
	.long -MULTIBOOT_MAGIC		/* checksum */

	.section .bss
	.align 4096
page_directory:
	.skip 4096
stack:
	.skip 4096
stack_top:

	.section .text
	.code32
	.globl _start
_start:
	mov $stack_top, %esp
	movl $0x83, page_directory	/* 0-4 MiB: present, writable, 4 MiB page */
	mov $page_directory, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x10, %eax			/* CR4.PSE */
	mov %eax, %cr4
	mov %cr0, %eax
	or $0x80000000, %eax		/* CR0.PG */
	mov %eax, %cr0

	xor %eax, %eax
	mov $1000, %ecx
1:	add %ecx, %eax
	loop 1b
	push %eax			/* through the stack: the page must work */
	pop %edx
	mov $EXIT_WRONG_SUM, %al
	cmp $500500, %edx
	jne 2f
	mov $EXIT_OK, %al
2:	out %al, $EXIT_PORT
3:	cli
	hlt
	jmp 3b
