package kmstest

import (
	"context"
	"sync/atomic"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/temporal-kms/kmscodec/kms"
)

// Counter passes every call on to the kms.API it wraps and counts the
// calls by operation, failed ones included, as KMS itself (and its bill)
// would. Use it to count the calls made to a KMS that does not count them
// itself, such as a mock or a KMS wrapped with faults. Its zero value is
// not usable: set API.
type Counter struct {
	kms.API
	GenerateDataKeyCalls, DecryptCalls, DescribeKeyCalls atomic.Int64
}

// GenerateDataKey counts the call and passes it on.
func (c *Counter) GenerateDataKey(ctx context.Context, in *awskms.GenerateDataKeyInput, opts ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	c.GenerateDataKeyCalls.Add(1)
	return c.API.GenerateDataKey(ctx, in, opts...)
}

// Decrypt counts the call and passes it on.
func (c *Counter) Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	c.DecryptCalls.Add(1)
	return c.API.Decrypt(ctx, in, opts...)
}

// DescribeKey counts the call and passes it on.
func (c *Counter) DescribeKey(ctx context.Context, in *awskms.DescribeKeyInput, opts ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	c.DescribeKeyCalls.Add(1)
	return c.API.DescribeKey(ctx, in, opts...)
}

// Total returns the number of calls of every operation.
func (c *Counter) Total() int64 {
	return c.GenerateDataKeyCalls.Load() + c.DecryptCalls.Load() + c.DescribeKeyCalls.Load()
}
