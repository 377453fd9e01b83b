package cloudauth

import (
	identity "go.temporal.io/cloud-sdk/api/identity/v1"
	resource "go.temporal.io/cloud-sdk/api/resource/v1"
)

// level is what a user may do with a namespace's payloads.
type level int

const (
	levelNone  level = iota
	levelRead        // decode
	levelWrite       // decode and encode
)

// userAccess is the part of a Cloud user's record that decides access:
// what the account role grants on every namespace, and what each
// namespace grants beyond that. It is immutable once built.
type userAccess struct {
	// inactive names the user's state when it is one that grants
	// nothing (deleted, suspended, ...); empty otherwise.
	inactive   string
	everywhere level
	namespaces map[string]level
}

// accessOf reduces a user record to userAccess. Only grants made to the
// user directly are seen: access a user has only through a user group,
// a project role or a custom role is not, and is refused (fail closed).
func accessOf(u *identity.User) *userAccess {
	a := &userAccess{namespaces: map[string]level{}}
	switch s := u.GetState(); s {
	case resource.ResourceState_RESOURCE_STATE_DELETING,
		resource.ResourceState_RESOURCE_STATE_DELETED,
		resource.ResourceState_RESOURCE_STATE_SUSPENDED,
		resource.ResourceState_RESOURCE_STATE_EXPIRED:
		a.inactive = s.String()
		return a
	}
	access := u.GetSpec().GetAccess()
	switch access.GetAccountAccess().GetRole() {
	case identity.AccountAccess_ROLE_OWNER, identity.AccountAccess_ROLE_ADMIN:
		// Account Owners and Global Admins are Namespace Admins of every
		// namespace. The other account roles (developer, read-only,
		// finance admin, metrics read) grant no namespace by themselves.
		a.everywhere = levelWrite
	}
	for ns, na := range access.GetNamespaceAccesses() {
		if l := permissionLevel(na.GetPermission()); l > levelNone {
			a.namespaces[ns] = l
		}
	}
	return a
}

// permissionLevel maps a namespace permission: read decodes; write and
// namespace admin also encode.
func permissionLevel(p identity.NamespaceAccess_Permission) level {
	switch p {
	case identity.NamespaceAccess_PERMISSION_READ:
		return levelRead
	case identity.NamespaceAccess_PERMISSION_WRITE, identity.NamespaceAccess_PERMISSION_ADMIN:
		return levelWrite
	}
	return levelNone
}

func (a *userAccess) allows(namespace string, write bool) bool {
	if a.inactive != "" {
		return false
	}
	need := levelRead
	if write {
		need = levelWrite
	}
	return max(a.everywhere, a.namespaces[namespace]) >= need
}
