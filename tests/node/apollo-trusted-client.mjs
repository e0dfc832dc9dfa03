// A partner's software as Apollo documents safelisting: Apollo Client with the persisted-queries
// link, whose ids come from the manifest its build made (@apollo/persisted-query-lists). It sends
// operations by id only (extensions.persistedQuery.sha256Hash), never their text.
//
//   node apollo-trusted-client.mjs ENDPOINT KEY MANIFEST VARIABLES_JSON
//
// Prints one JSON line: what each operation answered (POST for Day and Me, GET for One).
import {readFileSync} from 'node:fs';
import {ApolloClient, HttpLink, InMemoryCache, gql} from '@apollo/client';
import {PersistedQueryLink} from '@apollo/client/link/persisted-queries';
import {generatePersistedQueryIdsFromManifest} from '@apollo/persisted-query-lists';

const [endpoint, key, manifestPath, variablesJson] = process.argv.slice(2);
const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
const variables = JSON.parse(variablesJson);
const operation = (name) => gql(readFileSync(new URL(`client/operations/${name}.graphql`, import.meta.url), 'utf8'));

function client(useGETForHashedQueries) {
  const persisted = new PersistedQueryLink({
    ...generatePersistedQueryIdsFromManifest({loadManifest: () => manifest}),
    useGETForHashedQueries,
  });
  const http = new HttpLink({uri: endpoint, headers: {Authorization: `Bearer ${key}`}});
  return new ApolloClient({link: persisted.concat(http), cache: new InMemoryCache()});
}

async function run(apollo, name, vars) {
  try {
    const result = await apollo.query({query: operation(name), variables: vars, fetchPolicy: 'no-cache'});
    return {data: result.data ?? null, error: result.error ? String(result.error) : null};
  } catch (error) {
    return {data: null, error: String(error)};
  }
}

const post = client(false);
const get = client(true);
const answers = {
  Me: await run(post, 'Me', {}),
  Day: await run(post, 'Day', variables.Day),
  One: await run(get, 'One', variables.One),
};
console.log(JSON.stringify(answers));
