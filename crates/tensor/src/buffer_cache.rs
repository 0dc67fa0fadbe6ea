//! [`BufferCache`]: a global allocator that keeps large freed blocks for reuse.
//!
//! A training step allocates the same large activation, gradient and patch buffers every
//! step (the CNN's first convolution alone produces `6000 × 16 × 26 × 26` floats, 260 MB).
//! glibc serves any block over 32 MiB with a fresh `mmap` and returns it with `munmap` on
//! free, so every step pays the kernel to map, zero-fill (on first touch, page by page) and
//! unmap those pages again: a `perf` profile of the CNN step at B = 6000 put 46% of its
//! time in the kernel (page faults, `clear_page`, `munmap` TLB flushes).
//!
//! `BufferCache` wraps [`System`]. Blocks of at least [`BufferCache::MIN_BLOCK`] bytes are
//! not given back on free but kept, up to a byte budget, and handed out again for the next
//! request of exactly the same size and alignment: a repeated step finds its buffers
//! already mapped. A zeroed request served from the cache is cleared with `memset` (one
//! pass in user space, instead of a fault and a kernel clear per page). Smaller blocks go
//! straight to `System`.
//!
//! It changes no numbers, only where memory comes from; the process keeps up to the budget
//! of freed memory mapped instead of returning it. Install it in a binary (the `specreg`
//! binary and the benches do):
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: specreg_tensor::BufferCache = specreg_tensor::BufferCache::new();
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// How many freed blocks the cache holds at most.
const SLOTS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
    /// When it was freed (a counter): the oldest block is evicted first.
    freed: u64,
}

#[derive(Debug)]
struct Slots {
    blocks: [Option<Block>; SLOTS],
    bytes: usize,
    clock: u64,
}

// SAFETY: the pointers are owned, unaliased free blocks of `System`; moving them between
// threads is what a global allocator does anyway.
unsafe impl Send for Slots {}

/// A global allocator that reuses large freed blocks (see the module docs).
#[derive(Debug)]
pub struct BufferCache {
    budget: usize,
    slots: Mutex<Slots>,
}

impl BufferCache {
    /// Blocks this large or larger are cached (1 MiB).
    pub const MIN_BLOCK: usize = 1 << 20;
    /// The default byte budget of freed blocks kept (8 GiB).
    pub const DEFAULT_BUDGET: usize = 8 << 30;

    /// A cache with the default budget.
    pub const fn new() -> Self {
        Self::with_budget(Self::DEFAULT_BUDGET)
    }

    /// A cache that keeps at most `budget` bytes of freed blocks (0 turns caching off).
    pub const fn with_budget(budget: usize) -> Self {
        Self {
            budget,
            slots: Mutex::new(Slots {
                blocks: [None; SLOTS],
                bytes: 0,
                clock: 0,
            }),
        }
    }

    /// Bytes of freed blocks held now.
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Gives every cached block back to the system.
    pub fn release(&self) {
        let mut s = self.lock();
        for slot in s.blocks.iter_mut() {
            if let Some(b) = slot.take() {
                // SAFETY: `b` was allocated by `System` with exactly this layout and is free.
                unsafe { System.dealloc(b.ptr, layout_of(b)) };
            }
        }
        s.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic cannot happen while the lock is held (no allocation, no user code), but
        // if one did the slots are still consistent: recover rather than abort.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached block of exactly this layout, taken out of the cache.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let mut s = self.lock();
        let hit = s
            .blocks
            .iter_mut()
            .find(|b| b.is_some_and(|b| b.size == layout.size() && b.align == layout.align()))?;
        let b = hit.take()?;
        s.bytes -= b.size;
        Some(b.ptr)
    }

    /// Keeps a freed block, evicting the oldest cached blocks (back to `System`) to make
    /// room; a block larger than the whole budget goes straight back.
    fn keep(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() > self.budget {
            // SAFETY: `ptr` is a live `System` block of this layout, freed by the caller.
            unsafe { System.dealloc(ptr, layout) };
            return;
        }
        let mut s = self.lock();
        s.clock += 1;
        let block = Block {
            ptr,
            size: layout.size(),
            align: layout.align(),
            freed: s.clock,
        };
        while s.bytes + block.size > self.budget || s.blocks.iter().all(Option::is_some) {
            let oldest = s
                .blocks
                .iter_mut()
                .filter(|b| b.is_some())
                .min_by_key(|b| b.map_or(u64::MAX, |b| b.freed))
                .and_then(Option::take)
                .expect("the cache is over budget or full, so it holds a block");
            s.bytes -= oldest.size;
            // SAFETY: cached blocks are free `System` blocks of exactly this layout.
            unsafe { System.dealloc(oldest.ptr, layout_of(oldest)) };
        }
        let free = s
            .blocks
            .iter_mut()
            .find(|b| b.is_none())
            .expect("eviction left a free slot");
        *free = Some(block);
        s.bytes += block.size;
    }
}

impl Default for BufferCache {
    fn default() -> Self {
        Self::new()
    }
}

fn layout_of(b: Block) -> Layout {
    // SAFETY: size and align were read off a valid `Layout`.
    unsafe { Layout::from_size_align_unchecked(b.size, b.align) }
}

// SAFETY: every block handed out is a live `System` block of at least the requested size
// and alignment (cached blocks match size and alignment exactly), owned by nobody else
// (taken out of the cache under the lock); freed blocks are either kept, unaliased, or
// returned to `System` with the layout they were allocated with.
unsafe impl GlobalAlloc for BufferCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= Self::MIN_BLOCK
            && let Some(p) = self.take(layout)
        {
            return p;
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= Self::MIN_BLOCK
            && let Some(p) = self.take(layout)
        {
            // SAFETY: `p` points to `layout.size()` writable bytes owned by the caller now.
            unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
            return p;
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= Self::MIN_BLOCK {
            self.keep(ptr, layout);
        } else {
            // SAFETY: every block came from `System` (cached ones too) with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Blocks are all `System` blocks, so `System` can resize any of them in place; the
        // cache only ever sees the final layout on `dealloc`.
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(n: usize) -> Layout {
        Layout::from_size_align(n, 64).unwrap()
    }

    #[test]
    fn a_freed_large_block_is_reused_and_zeroed_on_request() {
        let c = BufferCache::new();
        let l = big(BufferCache::MIN_BLOCK * 3);
        unsafe {
            let p = c.alloc(l);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 0xAB, l.size());
            c.dealloc(p, l);
            assert_eq!(c.cached_bytes(), l.size());
            let q = c.alloc_zeroed(l);
            assert_eq!(q, p, "the same block comes back");
            assert_eq!(c.cached_bytes(), 0);
            let s = std::slice::from_raw_parts(q, l.size());
            assert!(s.iter().all(|&b| b == 0), "a zeroed request is cleared");
            c.dealloc(q, l);
        }
        c.release();
        assert_eq!(c.cached_bytes(), 0);
    }

    #[test]
    fn other_sizes_small_blocks_and_over_budget_blocks_are_not_cached() {
        let c = BufferCache::with_budget(BufferCache::MIN_BLOCK * 2);
        unsafe {
            let small = Layout::from_size_align(4096, 8).unwrap();
            let p = c.alloc(small);
            c.dealloc(p, small);
            assert_eq!(c.cached_bytes(), 0, "small blocks go back to the system");

            let a = big(BufferCache::MIN_BLOCK);
            let p = c.alloc(a);
            c.dealloc(p, a);
            assert_eq!(c.cached_bytes(), a.size());
            // A different size does not take the cached block.
            let b = big(BufferCache::MIN_BLOCK + 64);
            let q = c.alloc(b);
            assert_eq!(c.cached_bytes(), a.size());
            // Keeping it too would exceed the budget of 2 MiB: the older block is evicted.
            c.dealloc(q, b);
            assert_eq!(c.cached_bytes(), b.size());
            // A block over the whole budget is never kept.
            let huge = big(BufferCache::MIN_BLOCK * 3);
            let h = c.alloc(huge);
            c.dealloc(h, huge);
            assert_eq!(c.cached_bytes(), b.size());
            // A different alignment does not take it either.
            let b16 = Layout::from_size_align(b.size(), 16).unwrap();
            let r = c.alloc(b16);
            assert_eq!(c.cached_bytes(), b.size());
            c.dealloc(r, b16);
        }
        c.release();
        let off = BufferCache::with_budget(0);
        unsafe {
            let a = big(BufferCache::MIN_BLOCK);
            let p = off.alloc(a);
            off.dealloc(p, a);
        }
        assert_eq!(off.cached_bytes(), 0, "budget 0 caches nothing");
    }

    #[test]
    fn realloc_keeps_the_contents() {
        let c = BufferCache::new();
        unsafe {
            let l = big(BufferCache::MIN_BLOCK);
            let p = c.alloc(l);
            std::ptr::write_bytes(p, 7, l.size());
            let q = c.realloc(p, l, l.size() * 2);
            let s = std::slice::from_raw_parts(q, l.size());
            assert!(s.iter().all(|&b| b == 7));
            c.dealloc(q, big(l.size() * 2));
        }
        c.release();
    }

    #[test]
    fn a_full_cache_evicts_its_oldest_blocks() {
        let c = BufferCache::new();
        let layouts: Vec<Layout> = (0..SLOTS + 6)
            .map(|i| big(BufferCache::MIN_BLOCK + 64 * i))
            .collect();
        unsafe {
            let ptrs: Vec<*mut u8> = layouts.iter().map(|&l| c.alloc(l)).collect();
            for (&p, &l) in ptrs.iter().zip(&layouts) {
                c.dealloc(p, l);
            }
        }
        let kept: usize = layouts[6..].iter().map(Layout::size).sum();
        assert_eq!(c.cached_bytes(), kept, "the six oldest were evicted");
        c.release();
    }

    #[test]
    fn threads_never_get_the_same_block() {
        static CACHE: BufferCache = BufferCache::new();
        let sizes = [1usize, 2, 1, 3];
        std::thread::scope(|s| {
            for t in 0..4u8 {
                s.spawn(move || {
                    for round in 0..50 {
                        let l = big(BufferCache::MIN_BLOCK * sizes[(round + t as usize) % 4]);
                        unsafe {
                            let p = CACHE.alloc(l);
                            std::ptr::write_bytes(p, t, l.size());
                            std::thread::yield_now();
                            let s = std::slice::from_raw_parts(p, l.size());
                            assert!(s.iter().step_by(4096).all(|&b| b == t));
                            CACHE.dealloc(p, l);
                        }
                    }
                });
            }
        });
        CACHE.release();
    }
}
