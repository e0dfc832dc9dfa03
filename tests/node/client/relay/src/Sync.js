import {graphql} from 'react-relay';

export const sync = graphql`
  query SyncQuery($practiceId: ID!, $since: String) {
    appointmentChanges(practiceId: $practiceId, since: $since, first: 100) {
      edges { node { kind appointmentId appointment { startsAt status } } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
