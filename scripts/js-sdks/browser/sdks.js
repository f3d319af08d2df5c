// The two browser SDKs as an app ships them (from npm, through a bundler), each pointed at eventpipe by its
// host setting: the example the docs' "Send from your app" shows. `api` is the API's URL
// (https://events.example.com; locally http://127.0.0.1:8000), `key` an app key (`eventpipe apps create`).
import { AnalyticsBrowser } from '@segment/analytics-next'
import posthog from 'posthog-js'

// analytics.js sends to `${protocol}://${apiHost}/t`, `/p`, `/i`...; `protocol` defaults to "https", so a local
// API on plain http needs `protocol: "http"`. `cdnSettings` stops it fetching settings from Segment's CDN;
// `metrics: {sampleRate: 0}` stops its own usage metrics, which it would post to api.segment.io.
export function loadSegment (api, key) {
  const url = new URL(api)
  return AnalyticsBrowser.load({
    writeKey: key,
    cdnSettings: {
      integrations: {
        'Segment.io': { apiKey: key, apiHost: `${url.host}/v1`, protocol: url.protocol.replace(':', '') }
      },
      metrics: { sampleRate: 0 }
    }
  })
}

// posthog-js needs only `api_host`: it captures to /e/, and asks /array/<key>/config and /flags/ on load
// (eventpipe answers: capture only, no flags).
export function initPostHog (api, key, options = {}) {
  posthog.init(key, { api_host: api, ...options })
  return posthog
}
