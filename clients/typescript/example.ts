// A typed call against the palisade API, using only the generated types (api.d.ts): `tsc` checks
// this file against the OpenAPI document, so a contract change that breaks clients breaks here.
import type { components, paths } from "./api";

type Todo = components["schemas"]["Todo"];
type Problem = components["schemas"]["Problem"];
type Role = components["schemas"]["Role"];
type NewTodo = paths["/api/v1/todos"]["post"]["requestBody"]["content"]["application/json"];
type TodoPage = paths["/api/v1/todos"]["get"]["responses"][200]["content"]["application/json"];
type TodoQuery = NonNullable<paths["/api/v1/todos"]["get"]["parameters"]["query"]>;

export async function createTodo(baseUrl: string, token: string, title: string): Promise<Todo | Problem> {
  const body: NewTodo = { title };
  const response = await fetch(`${baseUrl}/api/v1/todos`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await response.json()) as Todo | Problem;
}

export async function listOpenTodos(baseUrl: string, token: string): Promise<string[]> {
  const query: TodoQuery = { done: false, limit: 50 };
  const response = await fetch(`${baseUrl}/api/v1/todos?done=${query.done}&limit=${query.limit}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const page = (await response.json()) as TodoPage;
  const next: string | null | undefined = page.next_cursor;
  return page.items.map((todo: Todo) => `${todo.title} (v${todo.version}, ${todo.done ? "done" : "open"})${next ? " …" : ""}`);
}

export function describe(problem: Problem): string {
  const fields = (problem.errors ?? []).map((error) => ` ${error.field}: ${error.message}`).join(";");
  return `${problem.status} ${problem.title}: ${problem.detail} (request ${problem.request_id})${fields}`;
}

export const promote: Role = "admin";
// @ts-expect-error a role is `member` or `admin`: if the document loosened it, this line would compile
export const invalidRole: Role = "owner";
// @ts-expect-error a new todo has a title: if the document made it optional, this line would compile
export const untitled: NewTodo = {};
