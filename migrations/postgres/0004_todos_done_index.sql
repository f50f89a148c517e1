-- GET /api/v1/todos?done=… pages through one tenant's todos in id order among those with the
-- given `done`: without this index that filter scans the tenant's whole list (issue 18).
CREATE INDEX todos_tenant_id_done_id ON todos (tenant_id, done, id);
