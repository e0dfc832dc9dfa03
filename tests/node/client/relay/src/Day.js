import {graphql} from 'react-relay';

export const day = graphql`
  query DayQuery($practiceId: ID!, $from: DateTime!, $to: DateTime!, $after: String) {
    appointments(practiceId: $practiceId, from: $from, to: $to, first: 50, after: $after) {
      edges {
        cursor
        node {
          id startsAt endsAt status source
          practitioner { id firstName lastName specialty }
          patient { id firstName lastName phone email }
        }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
