import { createServer } from 'node:http';
import { close, listen, originOf, readBody } from '../../local/http-util.ts';

/**
 * A CloudFormation stand-in (query protocol) for `dmp --env <name>`: DescribeStacks of one stack
 * answers its outputs; any other action or stack is a ValidationError ("does not exist").
 */

export interface CloudFormationStandIn {
  /** Its origin, for AWS_ENDPOINT_URL_CLOUDFORMATION. */
  readonly url: string;
  /** The parameters of every request it received. */
  readonly calls: readonly URLSearchParams[];
  close(): Promise<void>;
}

export async function startCloudFormation(
  stackName: string,
  outputs: Readonly<Record<string, string>>,
): Promise<CloudFormationStandIn> {
  const calls: URLSearchParams[] = [];
  const server = createServer((request, response) => {
    void readBody(request, 1 << 20).then((body) => {
      const params = new URLSearchParams(body.toString('utf8'));
      calls.push(params);
      response.setHeader('content-type', 'text/xml');
      if (params.get('Action') !== 'DescribeStacks' || params.get('StackName') !== stackName) {
        response.statusCode = 400;
        response.end(
          '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>' +
            `<Code>ValidationError</Code><Message>Stack with id ${params.get('StackName')} does not exist</Message>` +
            '</Error><RequestId>r1</RequestId></ErrorResponse>',
        );
        return;
      }
      const members = Object.entries(outputs)
        .map(
          ([key, value]) =>
            `<member><OutputKey>${key}</OutputKey><OutputValue>${value}</OutputValue></member>`,
        )
        .join('');
      response.end(
        '<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult>' +
          `<Stacks><member><StackName>${stackName}</StackName><StackId>arn:aws:cloudformation:eu-west-1:` +
          `000000000000:stack/${stackName}/1</StackId><CreationTime>2026-11-01T00:00:00Z</CreationTime>` +
          `<StackStatus>UPDATE_COMPLETE</StackStatus><Outputs>${members}</Outputs></member></Stacks>` +
          '</DescribeStacksResult>' +
          '<ResponseMetadata><RequestId>r2</RequestId></ResponseMetadata></DescribeStacksResponse>',
      );
    });
  });
  const url = originOf(await listen(server, 0));
  return { url, calls, close: () => close(server) };
}
