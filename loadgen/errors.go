package loadgen

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrClass is what kind of failure an attempt met, in the user's words.
type ErrClass uint8

// Error classes. ClassNone means success.
const (
	ClassNone          ErrClass = iota
	ClassDeadline               // the per-attempt timeout expired (client side)
	ClassUnavailable            // no connection to a member (gRPC Unavailable)
	ClassNoLeader               // the member has no leader
	ClassLeaderChanged          // the leader changed while the request was in flight
	ClassServerTimeout          // etcd's own request timeout (ErrTimeout and friends)
	ClassCanceled               // canceled by the run ending
	ClassOther
	numClasses
)

var classNames = [numClasses]string{"none", "deadline", "unavailable", "no_leader", "leader_changed", "server_timeout", "canceled", "other"}

func (c ErrClass) String() string { return classNames[c] }

// Classify names the class of an attempt's error.
func Classify(err error) ErrClass {
	if err == nil {
		return ClassNone
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ClassDeadline
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, rpctypes.ErrNoLeader):
		return ClassNoLeader
	case errors.Is(err, rpctypes.ErrLeaderChanged):
		return ClassLeaderChanged
	case errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost), errors.Is(err, rpctypes.ErrTimeoutWaitAppliedIndex):
		return ClassServerTimeout
	}
	// The client returns etcd's errors as gRPC status errors; map them back by message.
	if ev := rpctypes.Error(err); ev != err {
		return Classify(ev)
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return ClassDeadline
	case codes.Unavailable:
		return ClassUnavailable
	case codes.Canceled:
		return ClassCanceled
	}
	return ClassOther
}

// Retryable tells whether an attempt that failed with class c may be tried again. Every failure that
// a failover causes is retryable; ClassOther (a bad request, a compacted revision) is not.
func Retryable(c ErrClass) bool {
	return c != ClassNone && c != ClassOther && c != ClassCanceled
}

// ErrorCode names an attempt's error by etcd error or gRPC code, as a user would search for it:
// "etcd: no leader", "grpc: Unavailable", "context: deadline exceeded".
func ErrorCode(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "context: deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "context: canceled"
	}
	if ev, ok := rpctypes.Error(err).(rpctypes.EtcdError); ok {
		return "etcd: " + ev.Error()
	}
	if st, ok := status.FromError(err); ok {
		return "grpc: " + st.Code().String()
	}
	return "other"
}
