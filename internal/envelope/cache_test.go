package envelope_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentpg/agentpg/internal/envelope"
	"github.com/agentpg/agentpg/keys"
)

// keyTable stands for the store's table of wrapped data keys: it counts
// how often the cache loads from it.
type keyTable struct {
	mu      sync.Mutex
	wrapped map[string]keys.WrappedKey // by version:tenant
	loads   atomic.Int32
}

// add makes a data key for the tenant and version and stores it wrapped.
func (tb *keyTable) add(t *testing.T, p keys.Provider, tenantID string, version int) *envelope.DataKey {
	t.Helper()
	k, err := envelope.NewDataKey(context.Background(), p, version)
	if err != nil {
		t.Fatal(err)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.wrapped == nil {
		tb.wrapped = map[string]keys.WrappedKey{}
	}
	tb.wrapped[fmt.Sprint(version, ":", tenantID)] = k.Wrapped()
	return k
}

// loader returns the cache's load function for the tenant and version.
func (tb *keyTable) loader(tenantID string, version int) func(context.Context) (keys.WrappedKey, error) {
	return func(context.Context) (keys.WrappedKey, error) {
		tb.loads.Add(1)
		tb.mu.Lock()
		defer tb.mu.Unlock()
		w, ok := tb.wrapped[fmt.Sprint(version, ":", tenantID)]
		if !ok {
			return keys.WrappedKey{}, errNoSuchKey
		}
		return w, nil
	}
}

var errNoSuchKey = errors.New("no such data key")

// assertSameKey fails unless got opens what want sealed.
func assertSameKey(t *testing.T, got, want *envelope.DataKey) {
	t.Helper()
	aad := messageRow.AAD()
	sealed, err := want.Seal([]byte("probe"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.Open(sealed, aad); err != nil || got.Version() != want.Version() {
		t.Errorf("cache returned %v, want %v (%v)", got, want, err)
	}
}

func newCache(t *testing.T, p keys.Provider, size int) *envelope.Cache {
	t.Helper()
	c, err := envelope.NewCache(p, size)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCacheLoadsOnce(t *testing.T) {
	ctx := context.Background()
	p := provider(t, "k1")
	var table keyTable
	a1, a2, b1 := table.add(t, p, "a", 1), table.add(t, p, "a", 2), table.add(t, p, "b", 1)
	c := newCache(t, p, 16)

	for range 3 {
		for _, want := range []struct {
			tenant string
			key    *envelope.DataKey
		}{{"a", a1}, {"a", a2}, {"b", b1}} {
			got, err := c.Get(ctx, want.tenant, want.key.Version(), table.loader(want.tenant, want.key.Version()))
			if err != nil {
				t.Fatal(err)
			}
			assertSameKey(t, got, want.key)
		}
	}
	if n := table.loads.Load(); n != 3 {
		t.Errorf("%d loads for 3 keys read 3 times each, want 3", n)
	}
}

// TestCacheConcurrentMisses: goroutines that miss one key at once share
// one load (run with -race).
func TestCacheConcurrentMisses(t *testing.T) {
	p := provider(t, "k1")
	var table keyTable
	want := table.add(t, p, "a", 1)
	c := newCache(t, p, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			got, err := c.Get(context.Background(), "a", 1, table.loader("a", 1))
			if err != nil {
				t.Error(err)
				return
			}
			assertSameKey(t, got, want)
		})
	}
	wg.Wait()
	if n := table.loads.Load(); n != 1 {
		t.Errorf("%d loads, want 1", n)
	}
}

// TestCacheErrorsNotCached: a failed load or unwrap is retried by the next
// Get, and the error says why.
func TestCacheErrorsNotCached(t *testing.T) {
	ctx := context.Background()
	p := provider(t, "k1")
	var table keyTable
	c := newCache(t, p, 16)
	if _, err := c.Get(ctx, "a", 1, table.loader("a", 1)); !errors.Is(err, errNoSuchKey) {
		t.Fatalf("missing key: %v, want the loader's error", err)
	}
	want := table.add(t, p, "a", 1)
	got, err := c.Get(ctx, "a", 1, table.loader("a", 1))
	if err != nil {
		t.Fatalf("after the key was added: %v", err)
	}
	assertSameKey(t, got, want)

	// A key wrapped under a KEK the provider does not have.
	other := provider(t, "k9")
	table.add(t, other, "b", 1)
	for range 2 {
		if _, err := c.Get(ctx, "b", 1, table.loader("b", 1)); !errors.Is(err, keys.ErrUnknownKey) {
			t.Fatalf("key under an unknown KEK: %v, want ErrUnknownKey", err)
		}
	}
	if n := table.loads.Load(); n != 4 {
		t.Errorf("%d loads, want 4: failures are not cached", n)
	}
}

func TestCachePutAndForget(t *testing.T) {
	ctx := context.Background()
	p := provider(t, "k1")
	var table keyTable
	a1, b1 := table.add(t, p, "a", 1), table.add(t, p, "b", 1)
	a2, err := envelope.NewDataKey(ctx, p, 2) // just rotated, not loadable
	if err != nil {
		t.Fatal(err)
	}
	c := newCache(t, p, 16)
	c.Put("a", a2)
	for _, k := range []struct {
		tenant string
		key    *envelope.DataKey
	}{{"a", a1}, {"b", b1}} {
		if _, err := c.Get(ctx, k.tenant, 1, table.loader(k.tenant, 1)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Get(ctx, "a", 2, table.loader("a", 2))
	if err != nil {
		t.Fatalf("a key put in the cache: %v", err)
	}
	assertSameKey(t, got, a2)

	// Tenant a is erased: its wrapped keys are deleted, then forgotten.
	table.mu.Lock()
	delete(table.wrapped, "1:a")
	table.mu.Unlock()
	c.Forget("a")
	for _, v := range []int{1, 2} {
		if _, err := c.Get(ctx, "a", v, table.loader("a", v)); !errors.Is(err, errNoSuchKey) {
			t.Errorf("erased tenant's key %d: %v, want it gone", v, err)
		}
	}
	loads := table.loads.Load()
	if _, err := c.Get(ctx, "b", 1, table.loader("b", 1)); err != nil || table.loads.Load() != loads {
		t.Errorf("another tenant's key was forgotten too (%v)", err)
	}
}

func TestCacheEvicts(t *testing.T) {
	ctx := context.Background()
	p := provider(t, "k1")
	var table keyTable
	for v := 1; v <= 3; v++ {
		table.add(t, p, "a", v)
	}
	c := newCache(t, p, 2)
	for _, v := range []int{1, 2, 3, 3, 2, 1} {
		if _, err := c.Get(ctx, "a", v, table.loader("a", v)); err != nil {
			t.Fatal(err)
		}
	}
	// 1, 2, 3 miss; 3 and 2 hit; 1 was evicted by 3.
	if n := table.loads.Load(); n != 4 {
		t.Errorf("%d loads, want 4", n)
	}
	if _, err := envelope.NewCache(p, 0); err == nil {
		t.Errorf("a cache of 0 keys was made")
	}
}
