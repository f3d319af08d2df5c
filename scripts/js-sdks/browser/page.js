// The test page of tests/e2e/test_browser_sdks.py: loads both SDKs as sdks.js configures them, sends a few
// events with each, and records every event the SDKs handed to their transport (ids), in window.__sdks.
// Query: ?api=<API URL>&key=<app key>
import { initPostHog, loadSegment } from './sdks.js'

const params = new URLSearchParams(window.location.search)
const api = params.get('api')
const key = params.get('key')
const state = { segment: [], posthog: [], done: false, error: null }
window.__sdks = state

const analytics = loadSegment(api, key)
analytics.addSourceMiddleware(({ payload, next }) => {
  const e = payload.obj
  state.segment.push({ id: e.messageId, type: e.type, event: e.event || null })
  next(payload)
})
const posthog = initPostHog(api, key, {
  before_send: (e) => {
    if (e) state.posthog.push({ id: e.uuid, event: e.event })
    return e
  }
})

async function main () {
  await analytics.page('Docs', 'Pricing', { path: '/pricing' })
  await analytics.track('Browser Order Completed', { value: 3 })
  await analytics.identify('browser-user', { plan: 'pro' })
  posthog.capture('Browser Clicked', { button: 'buy' })
  posthog.identify('browser-user', { plan: 'pro' }, { first_seen: 'today' })
  state.done = true
}

main().catch((e) => { state.error = String((e && e.stack) || e) })
