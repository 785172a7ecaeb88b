/**
 * The key of a browser's opt-out request item in the mapping table: `pk` forget#<dmp user id>,
 * `sk` request (src/privacy/requests.ts writes it; the release stream's filter matches it). Apart
 * from requests.ts so that the event source declarations carry no SDK client.
 */
export const FORGET_REQUEST_KEY = { prefix: 'forget#', sortKey: 'request' } as const;
