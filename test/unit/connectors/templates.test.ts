import { describe, expect, it } from 'vitest';
import { RequestTemplateSchema } from '../../../src/config/connector.ts';
import {
  readJsonPath,
  renderJson,
  renderPath,
  renderRequest,
  TemplateError,
} from '../../../src/connectors/templates.ts';

const TRICKY = 'Cart & "VIP" / 50% ?#=+ é';

describe('renderPath', () => {
  it("renders the seed's create call with the name percent-encoded (space as %20)", () => {
    expect(renderPath('/v1/segment?title={name}', { name: 'My segment' })).toBe(
      '/v1/segment?title=My%20segment',
    );
  });

  it('keeps a tricky name intact through query and path placement', () => {
    const rendered = renderPath('/v1/segment/{name}?title={name}', { name: TRICKY });
    const url = new URL(rendered, 'https://partner.example');
    expect(url.searchParams.get('title')).toBe(TRICKY);
    expect(url.searchParams.size).toBe(1);
    expect(decodeURIComponent(url.pathname.split('/')[3] as string)).toBe(TRICKY);
    expect(url.pathname.split('/')).toHaveLength(4);
  });

  it('refuses an unknown placeholder instead of sending an empty value', () => {
    expect(() => renderPath('/v1/segment?title={nmae}', { name: 'x' })).toThrow(TemplateError);
    expect(() => renderPath('/v1/segment?title={nmae}', { name: 'x' })).toThrow('{nmae}');
  });

  it('renders connector variables', () => {
    expect(renderPath('/act_{var.adAccountId}/customaudiences', { 'var.adAccountId': '123' })).toBe(
      '/act_123/customaudiences',
    );
  });
});

describe('renderJson', () => {
  it('inserts a whole-placeholder string with the value type, and text inside longer strings', () => {
    expect(
      renderJson(
        { segment: '{segmentIdNumber}', userid: '{userId}', note: 'DMP {name}', list: ['{items}'] },
        {
          segmentIdNumber: 12345,
          userId: 'abc',
          name: TRICKY,
          items: [1, 2],
        },
      ),
    ).toEqual({ segment: 12345, userid: 'abc', note: `DMP ${TRICKY}`, list: [[1, 2]] });
  });
});

describe('renderRequest', () => {
  it('serializes a JSON body so quotes and slashes in names survive, with its content type', () => {
    const template = RequestTemplateSchema.parse({
      path: '/segments',
      body: { name: '{name}', kind: '{kind}' },
    });
    const request = renderRequest(template, { name: TRICKY, kind: 'custom' });
    expect(request.method).toBe('POST');
    expect(request.headers['content-type']).toBe('application/json');
    expect(JSON.parse(request.body!.toString('utf8'))).toEqual({ name: TRICKY, kind: 'custom' });
  });

  it('form-encodes a form body', () => {
    const template = RequestTemplateSchema.parse({
      path: '/x',
      bodyFormat: 'form',
      body: { name: '{name}', subtype: 'CUSTOM' },
    });
    const request = renderRequest(template, { name: TRICKY });
    expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const form = new URLSearchParams(request.body!.toString('utf8'));
    expect(form.get('name')).toBe(TRICKY);
    expect(form.get('subtype')).toBe('CUSTOM');
  });

  it('refuses a header value that would smuggle a line break', () => {
    const template = RequestTemplateSchema.parse({ path: '/x', headers: { 'x-name': '{name}' } });
    expect(() => renderRequest(template, { name: 'a\r\nx-evil: 1' })).toThrow(TemplateError);
    expect(renderRequest(template, { name: 'plain' }).headers['x-name']).toBe('plain');
  });

  it('sends no body when the template has none', () => {
    const request = renderRequest(
      RequestTemplateSchema.parse({ method: 'GET', path: '/v1/segments?title={name}' }),
      {
        name: 'a b',
      },
    );
    expect(request.body).toBeUndefined();
    expect(request.pathAndQuery).toBe('/v1/segments?title=a%20b');
  });
});

describe('readJsonPath', () => {
  const answer = { status: 'OK', segment_id: 12345, data: { items: [{ id: 'a' }, { id: 'b' }] } };

  it.each([
    ['segment_id', 12345],
    ['data.items[1].id', 'b'],
    ['data.items[0]', { id: 'a' }],
    ['data.items[5].id', undefined],
    ['missing.deeper', undefined],
    ['status.length', undefined],
  ])('%s -> %j', (path, expected) => {
    expect(readJsonPath(answer, path)).toEqual(expected);
  });

  it('does not read inherited properties', () => {
    expect(readJsonPath({}, 'constructor')).toBeUndefined();
    expect(readJsonPath({ a: {} }, 'a.__proto__')).toBeUndefined();
  });
});
