import {graphql} from 'react-relay';

export const cancel = graphql`
  mutation CancelMutation($id: ID!) {
    cancelAppointment(appointmentId: $id) { appointment { id status } }
  }
`;
