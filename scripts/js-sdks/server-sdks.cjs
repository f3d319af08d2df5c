// The two server-side JavaScript SDKs, each configured only by its host (the docs' "Send from your app"):
// a track and an identify with @segment/analytics-node, a capture and an identify with posthog-node, then
// both flushed. Run by tests/e2e/test_sdk_e2e.py; exits non-zero when an SDK reports an error.
// Usage: API=http://127.0.0.1:8000 KEY=<app key> node server-sdks.cjs
const { Analytics } = require('@segment/analytics-node')
const { PostHog } = require('posthog-node')

const api = process.env.API
const key = process.env.KEY

async function segment () {
  const analytics = new Analytics({ writeKey: key, host: api })
  analytics.on('error', (e) => { console.error('analytics-node', e); process.exitCode = 1 })
  analytics.track({ userId: 'node-user', event: 'Node Order Completed', properties: { value: 7 } })
  analytics.identify({ userId: 'node-user', traits: { plan: 'pro' } })
  await analytics.closeAndFlush()
}

async function posthog () {
  const client = new PostHog(key, { host: api })
  client.on('error', (e) => { console.error('posthog-node', e); process.exitCode = 1 })
  client.capture({ distinctId: 'node-user', event: 'Node Signed Up', properties: { value: 7 } })
  client.identify({ distinctId: 'node-user', properties: { plan: 'pro' } })
  await client.shutdown()
}

;(async () => {
  await segment()
  await posthog()
})().catch((e) => { console.error(e); process.exitCode = 1 })
