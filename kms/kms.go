// Package kms names the part of AWS KMS that kmscodec calls.
//
// Everything in kmscodec that talks to KMS goes through [API], so a
// *kms.Client from aws-sdk-go-v2 plugs in as it is, and tests can put a
// mock (see package mocks) or a wrapper that counts or injects faults in
// its place.
package kms

//go:generate go run github.com/golang/mock/mockgen@v1.6.0 -source=kms.go -destination=../mocks/mock_api.go -package=mocks

import (
	"context"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
)

// API is the subset of the AWS KMS client that kmscodec uses, with the
// exact signatures of *kms.Client from aws-sdk-go-v2.
//
// GenerateDataKey makes the data keys that encrypt payloads, Decrypt
// unwraps them when a payload is read, and DescribeKey turns an alias or
// key ID into the key ARN that payloads name.
type API interface {
	GenerateDataKey(ctx context.Context, params *awskms.GenerateDataKeyInput, optFns ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, params *awskms.DecryptInput, optFns ...func(*awskms.Options)) (*awskms.DecryptOutput, error)
	DescribeKey(ctx context.Context, params *awskms.DescribeKeyInput, optFns ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error)
}

var _ API = (*awskms.Client)(nil)
