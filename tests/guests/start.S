/* SPDX-License-Identifier: MIT */
/*
 * Entry of the test guests. The VMM (bench/kvm/) enters here in 64-bit
 * long mode with paging on (identity map), %rbx = hvm_start_info (PVH
 * layout) and %rsi = the vCPU index; every vCPU starts here. Each vCPU
 * takes its own 16 KiB stack.
 */
	.section .text.start, "ax"
	.globl _start
	.code64
_start:
	cli
	mov	%rsi, %rax
	inc	%rax
	shl	$14, %rax
	lea	guest_stacks(%rip), %rsp
	add	%rax, %rsp
	mov	%rbx, %rdi
	call	guest_main
1:	hlt
	jmp	1b

	.section .bss
	.balign 4096
	.globl guest_stacks
guest_stacks:
	.space	16384 * 8
	.section .note.GNU-stack, "", @progbits
