"""A circular doubly linked list with a sentinel, like the kernel's `struct list_head`.

The hinting boundary is a pointer to a list_head (a page's or the sentinel), so the model
keeps real nodes rather than a Python list: `insert_before(node, boundary)` is exactly
`list_add_tail(&page->lru, boundary)`.
"""

from __future__ import annotations

from collections.abc import Iterator

from harness.model.errors import ModelInvariantError


class Node:
    """One list_head. `pfn` is None for the sentinel (the free_list head itself)."""

    __slots__ = ("next", "pfn", "prev")

    def __init__(self, pfn: int | None) -> None:
        self.pfn = pfn
        self.prev: Node = self
        self.next: Node = self

    @property
    def is_sentinel(self) -> bool:
        return self.pfn is None


class FreeList:
    """free_area[order].free_list[mt]."""

    def __init__(self) -> None:
        self.head = Node(None)
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Node]:
        node = self.head.next
        while node is not self.head:
            yield node
            node = node.next

    def pfns(self) -> list[int]:
        return [node.pfn for node in self if node.pfn is not None]

    def insert_before(self, node: Node, ref: Node) -> None:
        """list_add_tail(node, ref): `node` becomes ref's predecessor."""
        node.prev, node.next = ref.prev, ref
        ref.prev.next = node
        ref.prev = node
        self.length += 1

    def add_head(self, node: Node) -> None:
        """list_add(node, head)."""
        self.insert_before(node, self.head.next)

    def remove(self, node: Node) -> None:
        """list_del(node)."""
        node.prev.next = node.next
        node.next.prev = node.prev
        node.prev = node.next = node
        self.length -= 1

    def first(self) -> Node | None:
        return None if self.head.next is self.head else self.head.next

    def contains(self, node: Node) -> bool:
        return node is self.head or any(n is node for n in self)

    def index_of(self, node: Node) -> int:
        """0-based position from the head; len(self) for the sentinel."""
        for index, candidate in enumerate(self):
            if candidate is node:
                return index
        if node is self.head:
            return self.length
        raise ModelInvariantError(f"node pfn={node.pfn} is not on this list", "model bug")
