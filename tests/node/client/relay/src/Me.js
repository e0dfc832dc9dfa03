// relay-compiler names operations after their module: MeQuery lives in Me.js.
import {graphql} from 'react-relay';

export const me = graphql`
  query MeQuery {
    viewer { name keyPrefix grants { practiceId practiceName scopes expiresAt daysBack daysAhead historyUntil } }
    rateLimit { currentlyAvailable maximumAvailable restoreRate maxQueryCost }
  }
`;
