/* SPDX-License-Identifier: MIT */
/*
 * Entry of the test guests, two ways in:
 *  - pvh_start32: the PVH direct-boot entry named by the
 *    XEN_ELFNOTE_PHYS32_ENTRY note below: 32-bit protected mode, paging
 *    off, %ebx = hvm_start_info. It switches to long mode itself (static
 *    identity map of 4 GiB in 2 MiB pages) and goes on at _start.
 *  - _start: 64-bit long mode with paging on (a VMM that sets long mode up
 *    itself), %rbx = hvm_start_info.
 * In both, %esi/%rsi = the vCPU index (the bench VMM starts every vCPU at
 * the entry). Each vCPU takes its own 16 KiB stack.
 */
	.section .note.Xen, "a", @note
	.balign 4
	.long	4, 4, 18	/* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.long	pvh_start32

	.section .text.start, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	mov	$pvh_pml4, %eax
	mov	%eax, %cr3
	mov	%cr4, %eax
	or	$0x620, %eax		/* PAE, OSFXSR, OSXMMEXCPT */
	mov	%eax, %cr4
	mov	$0xc0000080, %ecx	/* EFER */
	rdmsr
	or	$0x100, %eax		/* LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80000031, %eax	/* PG, NE, ET, PE */
	mov	%eax, %cr0
	lgdt	pvh_gdt_desc
	ljmp	$0x08, $pvh_start64

	.code64
pvh_start64:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	%ebx, %ebx		/* upper halves are undefined */
	mov	%esi, %esi

	.globl _start
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

	.section .data
	.balign 8
pvh_gdt:
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08: 64-bit code */
	.quad	0x00cf93000000ffff	/* 0x10: data */
pvh_gdt_desc:
	.word	pvh_gdt_desc - pvh_gdt - 1
	.long	pvh_gdt

	.balign 4096
pvh_pml4:
	.quad	pvh_pdpt + 3
	.fill	511, 8, 0
pvh_pdpt:
	.quad	pvh_pd + 3, pvh_pd + 0x1003, pvh_pd + 0x2003, pvh_pd + 0x3003
	.fill	508, 8, 0
pvh_pd:
	.set	i, 0
	.rept	2048
	.quad	(i << 21) | 0x83	/* present, writable, 2 MiB */
	.set	i, i + 1
	.endr

	.section .bss
	.balign 4096
	.globl guest_stacks
guest_stacks:
	.space	16384 * 8
	.section .note.GNU-stack, "", @progbits
