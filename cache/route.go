package cache

import (
	"github.com/temporal-kms/kmscodec/kms"
)

// Target is one way to unwrap a data key: the KMS client to call and the
// key ARN to name in the Decrypt call, which KMS's answer must name too.
type Target struct {
	API    kms.API
	KeyARN string
}

// Router says where the data keys wrapped by a key ARN are unwrapped.
type Router interface {
	// Route returns the targets to try for keyARN, best first; at least
	// one. The next target is tried only after a transient failure of
	// the one before.
	Route(keyARN string) []Target
}

// NewRegionalRouter returns a Router over the KMS clients of several
// regions, home being the caller's own region (which must have a client):
//
//   - a multi-Region key is unwrapped by its replica in home, then after
//     a transient failure by its replicas in the regions of preference,
//     then in its own region, skipping regions without a client. A
//     replica shares its key material, so what one wrapped another
//     unwraps; routing to home's replica spares a call across regions,
//     and keeps reads going while the writer's region is down;
//   - a single-Region key is unwrapped in its own region, by that
//     region's client if there is one, else by home's client, which KMS
//     will answer only if the key is in fact home's;
//   - anything that is not a key ARN goes to home's client as it is.
func NewRegionalRouter(home string, clients map[string]kms.API, preference []string) Router {
	return &regionalRouter{home: home, clients: clients, preference: preference}
}

type regionalRouter struct {
	home       string
	clients    map[string]kms.API
	preference []string
}

func (r *regionalRouter) Route(keyARN string) []Target {
	arn, ok := kms.ParseKeyARN(keyARN)
	if !ok {
		return []Target{{API: r.clients[r.home], KeyARN: keyARN}}
	}
	if !arn.MultiRegion() {
		if c, ok := r.clients[arn.Region]; ok {
			return []Target{{API: c, KeyARN: keyARN}}
		}
		return []Target{{API: r.clients[r.home], KeyARN: keyARN}}
	}
	targets := make([]Target, 0, 2)
	tried := make(map[string]bool, 2+len(r.preference))
	add := func(region string) {
		c, ok := r.clients[region]
		if !ok || tried[region] {
			return
		}
		tried[region] = true
		targets = append(targets, Target{API: c, KeyARN: arn.InRegion(region).String()})
	}
	add(r.home)
	for _, region := range r.preference {
		add(region)
	}
	add(arn.Region)
	return targets
}
