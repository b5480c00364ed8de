// One way to open Postgres for the function, the worker and the tests.
import postgres from "postgres";

/** Columns come back camelCased (`exit_code` → `exitCode`); values are untouched. */
export function connect(url: string, options: postgres.Options<Record<string, postgres.PostgresType>> = {}) {
  return postgres(url, {
    transform: { column: { from: postgres.toCamel } },
    onnotice: () => {},
    ...options,
  });
}
