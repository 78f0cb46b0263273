package store

// Exported for the tests of package store_test.
var (
	// TenantDB is a connection bound to a tenant, as Store.as returns.
	TenantDB = func(db querier, tenant string) querier { return tenantDB{db: db, tenant: tenant} }
	// AppTablePrivileges are the application role's table privileges.
	AppTablePrivileges = appTablePrivileges
)
