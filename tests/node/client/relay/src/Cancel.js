import {graphql} from 'react-relay';

export const cancel = graphql`
  mutation CancelMutation($id: ID!) {
    cancelAppointment(appointmentId: $id) {
      __typename
      ... on AppointmentCancelled { appointment { id status } }
      ... on WriteRefused { reason message }
    }
  }
`;
