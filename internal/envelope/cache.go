package envelope

import (
	"context"
	"fmt"
	"strconv"

	"github.com/agentpg/agentpg/keys"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Cache keeps unwrapped data keys by tenant and version, at most size of
// them (least recently used first out), so that the provider is asked once
// per key rather than once per row. Concurrent misses of one key share a
// single load and unwrap. A Cache is safe for concurrent use.
type Cache struct {
	provider keys.Provider
	keys     *lru.Cache[cacheKey, *DataKey]
	loads    singleflight.Group
}

// cacheKey names a data key.
type cacheKey struct {
	tenantID string
	version  int
}

// NewCache returns a cache of at most size data keys unwrapped with p.
func NewCache(p keys.Provider, size int) (*Cache, error) {
	l, err := lru.New[cacheKey, *DataKey](size)
	if err != nil {
		return nil, fmt.Errorf("envelope: cache of %d keys: %w", size, err)
	}
	return &Cache{provider: p, keys: l}, nil
}

// Get returns the tenant's data key of that version. On a miss it calls
// load for the wrapped key (the store reads it from its table), unwraps it
// and keeps it. Callers that miss the same key at once wait for one load,
// made with the first caller's ctx. Errors are not cached.
func (c *Cache) Get(ctx context.Context, tenantID string, version int, load func(context.Context) (keys.WrappedKey, error)) (*DataKey, error) {
	name := cacheKey{tenantID, version}
	if k, ok := c.keys.Get(name); ok {
		return k, nil
	}
	// The version's digits end at the first colon: the key is unambiguous.
	k, err, _ := c.loads.Do(strconv.Itoa(version)+":"+tenantID, func() (any, error) {
		if k, ok := c.keys.Get(name); ok { // added while this caller missed
			return k, nil
		}
		wrapped, err := load(ctx)
		if err != nil {
			return nil, fmt.Errorf("envelope: loading data key %d of tenant %q: %w", version, tenantID, err)
		}
		k, err := UnwrapDataKey(ctx, c.provider, version, wrapped)
		if err != nil {
			return nil, err
		}
		c.keys.Add(name, k)
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	return k.(*DataKey), nil
}

// Peek returns the tenant's data key of that version if it is cached,
// without loading it or refreshing its place in the cache.
func (c *Cache) Peek(tenantID string, version int) (*DataKey, bool) {
	return c.keys.Peek(cacheKey{tenantID, version})
}

// Put keeps k as the tenant's data key of k's version: a key just made by
// NewDataKey (or re-wrapped) needs no unwrap.
func (c *Cache) Put(tenantID string, k *DataKey) {
	c.keys.Add(cacheKey{tenantID, k.Version()}, k)
}

// Forget drops every version of the tenant's data keys, when the tenant is
// erased (crypto-shredding). Call it after the wrapped keys are deleted, so
// that no concurrent Get loads them again.
func (c *Cache) Forget(tenantID string) {
	for _, name := range c.keys.Keys() {
		if name.tenantID == tenantID {
			c.keys.Remove(name)
		}
	}
}
