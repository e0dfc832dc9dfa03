import {graphql} from 'react-relay';

export const one = graphql`
  query OneQuery($id: ID!) {
    node(id: $id) { id ... on Appointment { startsAt status patient { lastName } } }
  }
`;
