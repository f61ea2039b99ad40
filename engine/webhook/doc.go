// Package webhook sends Nearcast's events (enter, exit, dwell,
// offer.issued, push.sent, push.failed, coupon.opened, coupon.redeemed,
// customer.erased) to the company's other systems: signed HTTP requests
// to the subscriptions operators make, and a Redis Stream that workers
// inside the cluster can read themselves (issue 20).
//
// # Pieces
//
//   - Subscription and Store: the endpoints, versioned in Redis under the
//     {hooks} hash tag (nc:{hooks}:subs, nc:{hooks}:sub_versions,
//     nc:{hooks}:version, and the last MaxVersions of each, without its
//     secret, in nc:{hooks}:history:<id>), each change announced on
//     ChannelChanged; Live keeps every replica's view current within a
//     second (rules.Follow, as for the catalog). Store.Health reads a
//     subscription's lag, pending events, oldest age and dead letters
//     from Redis; Store.SendTest sends it a webhook.test event alone.
//   - Where requests may go: https, or http to loopback for development;
//     never an address of a private, link-local, shared or other special
//     network (checked when a subscription is saved, and again on every
//     dial after DNS), but for the networks an operator allows
//     (Config.AllowNets); no redirect is followed.
//   - Event and Emitter: facts appended to one of Shards streams
//     (StreamKey, nc:{hooks:<n>}:events), the shard chosen by the customer
//     id (ShardOf), so that a customer's events keep their order. Each
//     stream is capped near its MaxLen (XADD MAXLEN ~). Events name ids,
//     never coordinates. EraseCustomer removes a customer's entries and
//     dead letters and tells every subscription (customer.erased).
//   - Deliverer: one per process. Each shard is held by one process at a
//     time (a lease, nc:{hooks:<n>}:lease) and, within it, read by one
//     worker per subscription through the subscription's own consumer
//     group ("sub:<id>"), so every subscription has its own position,
//     its own pending entries and its own memory bound. A worker posts one
//     request at a time, each customer's events in order: a customer's
//     failing event holds back that customer's later events for that
//     subscription only. Failures back off exponentially with jitter
//     (Retry-After honoured on 429 and 503) until Config.MaxAge, then the
//     event goes to the subscription's dead letters
//     (nc:{hookdead:<id>}:list), which Store lists, replays and drops.
//     An event is acknowledged only once delivered or dead-lettered: a
//     process that stops leaves it pending, and the next holder of the
//     shard sends it again (at least once; the webhook-id header is the
//     same every time, the receiver's idempotency key).
//   - Sign and Verify: the Standard Webhooks signature (webhook-id,
//     webhook-timestamp, webhook-signature: v1,<base64 HMAC-SHA256 of
//     "id.timestamp.body">), so receivers can use any Standard Webhooks
//     library.
//
// # Bounds
//
// Redis: each shard's stream holds about MaxLen entries (DefaultMaxLen, a
// million), so a subscription that falls further behind loses its
// oldest unread events; dead letters are at most Config.DeadMax per
// subscription. Memory: at most Config.Buffer events per subscription
// and shard. Requests: at most one in flight per subscription and shard
// (Shards per subscription), each within Config.Timeout.
package webhook
