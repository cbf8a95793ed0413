// The protocol authors' whole server suite against the reasonq API at DS_URL (every group; the reserved
// subscription APIs only run when DS_SUBSCRIPTIONS=1, as the suite itself decides).
import { describe } from "vitest"
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DS_URL
if (!baseUrl) throw new Error("DS_URL is not set")
describe("reasonq", () => {
  runConformanceTests({
    baseUrl,
    longPollTimeoutMs: Number(process.env.DS_LONG_POLL_MS || 20000),
    subscriptions: process.env.DS_SUBSCRIPTIONS === "1",
  })
})
