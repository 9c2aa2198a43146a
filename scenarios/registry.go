package scenarios

import "fmt"

// registry holds the rules other packages register with the schema (fault actions, workload
// kinds), in the order they were registered.
type registry[T any] struct {
	what  string // "fault action", "workload kind"
	name  func(*T) string
	items []*T
}

// add registers x; a name registered twice is a programming error.
func (r *registry[T]) add(x T) {
	if r.of(r.name(&x)) != nil {
		panic(fmt.Sprintf("%s %q registered twice", r.what, r.name(&x)))
	}
	r.items = append(r.items, &x)
}

// names lists the registered names in order.
func (r *registry[T]) names() []string {
	out := make([]string, len(r.items))
	for i, x := range r.items {
		out[i] = r.name(x)
	}
	return out
}

// of finds what is registered by a name (nil: nothing).
func (r *registry[T]) of(name string) *T {
	for _, x := range r.items {
		if r.name(x) == name {
			return x
		}
	}
	return nil
}
